// One definition for the bench and the tests, which start servers the same way.
export { freePort } from '../../bench/lib/free-port.js';
