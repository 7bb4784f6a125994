// The seed's reasoning service: hears `fs.change`, asks for a thought by
// enqueuing `agent.think` (durable: no thought is lost if the thinker is
// down), hears the answer on its own reply topic and publishes `action.plan`.
//   BRAINSTEM_URL=ws://127.0.0.1:8080/bus node examples/reasoning-service.js
import { startService } from 'brainstem/client';

const id = process.env.name ?? 'reasoning';
// The gateway publishes a finished task's result on its replyTo, correlationId = taskId.
const replyTopic = `agent.reply.${id}`;

await startService({
  id,
  topics: ['fs.change', replyTopic],
  handleEvent: async (event, broker) => {
    if (event.type === 'fs.change') {
      const change = event.payload;
      const taskId = await broker.enqueue('agent.think', {
        input: `${change.file} was ${change.kind}`,
        change,
      }, { replyTo: replyTopic });
      console.log(`[${id}] ${change.file} ${change.kind}: asked agent.think (task ${taskId})`);
      return;
    }
    if (event.payload && typeof event.payload === 'object' && 'error' in event.payload) {
      console.error(`[${id}] no thought for task ${event.correlationId}: ${event.payload.error}`);
      return;
    }
    await broker.publish('action.plan', { taskId: event.correlationId, ...event.payload });
    console.log(`[${id}] plan: ${event.payload.suggestion}`);
  },
});
