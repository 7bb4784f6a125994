import { readFileSync } from 'node:fs';

/** The command line's help: every command's usage, summary and details. */
const COMMANDS: Record<string, { usage: string; summary: string; details?: string }> = {
  start: {
    usage: 'brainstem start [--port N] [--host ADDRESS]',
    summary: 'run the gateway in the foreground (Ctrl-C stops it)',
    details: 'Other settings come from the environment (PORT, HOST, REDIS_URL, LOG_LEVEL, …; see the README).',
  },
  pub: {
    usage: 'brainstem pub TOPIC [JSON|-]',
    summary: 'publish an event; prints the receipt ({"ok":true,"delivered":N})',
    details: 'Without JSON the payload is read from piped stdin (one value, or one per line: each is published), else null.',
  },
  sub: {
    usage: 'brainstem sub PATTERN... [--count N] | brainstem sub PATTERN --since OFFSET|--last N',
    summary: 'print each matching event as one JSON line until interrupted',
    details: 'Wildcards: * matches one segment, > (last) one or more. Quote them for the shell: brainstem sub \'agent.>\'.\n'
      + '--count N exits after N events. Reconnects if the gateway restarts.\n'
      + 'On a retained pattern, --since OFFSET first prints the events after OFFSET ("0": all kept), --last N the last N;\n'
      + 'after a reconnect it resumes from the last offset printed, so nothing is missed or printed twice.',
  },
  history: {
    usage: 'brainstem history PATTERN [--last N | --since OFFSET]',
    summary: 'print the retained events of a pattern as JSON lines (default: the last 100)',
    details: 'Each event carries its "offset"; brainstem sub PATTERN --since OFFSET follows on from one.',
  },
  request: {
    usage: 'brainstem request TYPE [JSON|-] [--timeout MS]',
    summary: 'publish with replyTo and print the reply event (exit 1 if none within --timeout, default 10000)',
  },
  enqueue: {
    usage: 'brainstem enqueue QUEUE [JSON|-] [--priority N] [--delay MS] [--attempts N] [--job-id ID] [--stream]',
    summary: 'store a task durably; prints its taskId once the gateway has stored it',
    details: 'Without JSON the task is read from piped stdin (one value, or one per line: each is enqueued).\n'
      + '--stream lets its worker stream output to followers (brainstem follow TASK_ID).',
  },
  follow: {
    usage: 'brainstem follow TASK_ID [--from SEQ] [--raw]',
    summary: 'print the output a streamed task\'s worker writes, as it comes, until the task ends',
    details: 'Default: one JSON line per chunk, {"seq","attempt","data"}, a binary chunk\'s bytes as "base64";\n'
      + '{"seq","gap":true} when chunks before seq are no longer kept; last {"seq","end","result"}.\n'
      + '--raw writes the chunks themselves: a string\'s text as it is, bytes as they are, other JSON as a line;\n'
      + 'the end and its result then go to stderr. --from SEQ starts at that seq (default 1: the whole stream).\n'
      + 'Resumes after a reconnect from the seq after the last one printed. Exit status: 0 when the task ended ok\n'
      + '(or on Ctrl-C), 2 when it failed, 3 when it was cancelled (or timed out, or was revoked), 1 on any other\n'
      + 'failure: a task without a stream, or one no longer kept, is UNKNOWN_TASK.',
  },
  queues: {
    usage: 'brainstem queues [QUEUE]',
    summary: 'every queue with its counts and pullers (or one queue with its tasks), as JSON',
  },
  task: {
    usage: 'brainstem task QUEUE ID',
    summary: 'one task as JSON: state (waiting, delayed, active, completed, failed, cancelled), progress, holder, result, reasons',
  },
  cancel: {
    usage: 'brainstem cancel QUEUE ID',
    summary: 'cancel a waiting, delayed or active task (admin token when auth is on); prints its view',
  },
  heartbeats: {
    usage: 'brainstem heartbeats',
    summary: 'the processes that send heartbeats, with their last beat and metrics, as JSON',
  },
  services: {
    usage: 'brainstem services',
    summary: 'each service with its status, instances and bus connections, as JSON',
  },
};

const COMMON_OPTIONS = `Options (every command):
  --url URL       the gateway: ws://HOST:PORT/bus or http://HOST:PORT
                  (default: $BRAINSTEM_URL, else ws://127.0.0.1:8080/bus)
  --token TOKEN   bearer token when auth is on (default: $BRAINSTEM_TOKEN)
  --name NAME     the name this command connects as (default: brainstem-cli)
  -h, --help      help; brainstem COMMAND --help for one command
  -v, --version   the version`;

export function usage(): string {
  const commands = Object.values(COMMANDS).map((c) => `  ${c.usage}\n      ${c.summary}`).join('\n');
  return `brainstem: the gateway of the local nervous system, and its command line.

Commands:
${commands}

${COMMON_OPTIONS}

JSON is taken from the argument, or from stdin when the argument is - or
absent and stdin is piped. Exit status: 0 on success, 1 on any failure
(bad JSON or arguments, gateway unreachable, refused, timeout); follow
answers 2 for a task that failed and 3 for one cancelled.

Examples:
  brainstem sub 'fs.>'
  brainstem sub 'queue.>' --since 0
  brainstem pub fs.change '{"path":"src/a.ts"}'
  echo '{"input":"hello"}' | brainstem enqueue agent.think
  brainstem follow "$(brainstem enqueue llm.generate '{"prompt":"hi"}' --stream)"
  brainstem request math.add '{"a":1,"b":2}' --timeout 2000
`;
}

export function commandHelp(name: string): string {
  const command = COMMANDS[name] as { usage: string; summary: string; details?: string };
  return `Usage: ${command.usage}\n\n${command.summary}\n${command.details ? `\n${command.details}\n` : ''}\n${COMMON_OPTIONS}\n`;
}

export function version(): string {
  // dist/src/cli/ when built, src/cli/ when run from source.
  for (const candidate of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(candidate, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'brainstem' && pkg.version) return pkg.version;
    } catch {
      // Try the next place.
    }
  }
  return 'unknown';
}

export function isCommand(name: string): boolean {
  return Object.hasOwn(COMMANDS, name);
}

/** One command's usage line. */
export function usageOf(name: string): string {
  return (COMMANDS[name] as { usage: string }).usage;
}
