// The seed's thinker: works the `agent.think` queue. What a task handler
// returns is the task's result; the gateway publishes it on the task's
// replyTo, which is how the reasoning service hears the answer. A throw
// fails the task, and the queue retries it.
//   CONCURRENCY=2 BRAINSTEM_URL=ws://127.0.0.1:8080/bus node examples/think-worker.js
import { extname } from 'node:path';
import { startService } from 'brainstem/client';

const id = process.env.name ?? 'thinker';

/**
 * The place where Cephalon's local model would be asked. A rule stands in
 * for it here so that the whole flow runs on any machine.
 */
function think({ input, change }) {
  let suggestion;
  if (change?.kind === 'deleted') suggestion = `find what still imports ${change.file}`;
  else if (['.ts', '.js', '.py'].includes(extname(change?.file ?? ''))) suggestion = `run the tests that cover ${change.file}`;
  else suggestion = `review ${change?.file ?? 'the change'}`;
  return { thought: `${input}; ${suggestion}`, suggestion, file: change?.file ?? null };
}

await startService({
  id,
  queues: ['agent.think'],
  concurrency: Number(process.env.CONCURRENCY ?? 2),
  handleTask: async (task) => {
    const answer = think(task.payload ?? {});
    console.log(`[${id}] task ${task.id}: ${answer.suggestion}`);
    return answer;
  },
});
