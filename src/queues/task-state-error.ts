import { BusError } from '../bus/protocol.js';

/**
 * A REST action on a task in a state that does not allow it: `code`
 * TASK_ACTIVE (it is being worked on) or TASK_STATE; the registry gives
 * their HTTP status.
 */
export class TaskStateError extends BusError {
  constructor(readonly state: string, message: string) {
    super(state === 'active' ? 'TASK_ACTIVE' : 'TASK_STATE', message);
    this.name = 'TaskStateError';
  }
}
