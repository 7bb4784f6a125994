import t from 'tap';
import { pythonVenvs, runPythonUnder, VENV_PYTHON } from './python/python-process.js';

// python-seed.test.ts again, with the client as pip installs it: the current websockets.
t.comment(await pythonVenvs());
runPythonUnder(VENV_PYTHON);
await import('./python-seed.test.js');
