/**
 * A REST action on a task in a state that does not allow it: HTTP 409 with
 * `code` TASK_ACTIVE (it is being worked on) or TASK_STATE. `statusCode`
 * and `code` are what the app's one error handler answers with.
 */
export class TaskStateError extends Error {
  readonly statusCode = 409;
  readonly code: 'TASK_ACTIVE' | 'TASK_STATE';

  constructor(readonly state: string, message: string) {
    super(message);
    this.name = 'TaskStateError';
    this.code = state === 'active' ? 'TASK_ACTIVE' : 'TASK_STATE';
  }
}
