import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { startGateway } from '../helpers/gateway.js';
import { currentPython, pythonVenvs, VENV_PYTHON } from '../python/python-process.js';
import { PythonDriver } from './driver.js';
import { FakeBus } from './fake-bus.js';
import { runScenario, type DriverFactory, type Scenario } from './runner.js';
import { TsDriver } from './ts-driver.js';

/**
 * The client contract, once for both languages: every scenario of this
 * folder runs with the TypeScript client and with the Python client (under
 * Debian's Python and websockets, and as pip installs it with the current
 * websockets), and each one either passes in all or fails the suite.
 */
const folder = fileURLToPath(new URL('.', import.meta.url));
const only = process.env.CONFORMANCE_ONLY;
const scenarios = readdirSync(folder)
  .filter((file) => file.endsWith('.json'))
  .filter((file) => !only || file.includes(only))
  .sort()
  .map((file) => ({ file, scenario: JSON.parse(readFileSync(`${folder}/${file}`, 'utf8')) as Scenario }));

interface Teardown {
  teardown(fn: () => unknown): void;
}

const drivers: Record<string, (t: Teardown) => DriverFactory> = {
  typescript: () => async (url, settings, note) => new TsDriver(url, settings, note),
  python: (t) => async (url, settings, note) => PythonDriver.start(t, url, settings, note, currentPython()),
  'python-venv': (t) => async (url, settings, note) => PythonDriver.start(t, url, settings, note, VENV_PYTHON),
};

t.test('the Python package ships the contract file unchanged', async (t) => {
  const contract = (path: string) => readFileSync(new URL(path, import.meta.url), 'utf8');
  t.equal(contract('../../clients/python/src/brainstem/contract.json'), contract('../../clients/contract.json'),
    'clients/python/src/brainstem/contract.json is a copy of clients/contract.json');
});

t.test('conformance scenarios', async (t) => {
  t.ok(scenarios.length > 0, 'scenarios found');
  t.comment(await pythonVenvs());
  const gateway = scenarios.some(({ scenario }) => scenario.gateway === 'real') ? await startGateway(t) : null;
  let runs = 0;
  for (const { file, scenario } of scenarios) {
    for (const [language, factory] of Object.entries(drivers)) {
      await t.test(`${file.replace(/\.json$/, '')} [${language}]: ${scenario.title}`, async (t) => {
        const run = `${language.slice(0, 2)}${++runs}${Date.now().toString(36)}`;
        if (scenario.gateway === 'fake') {
          const fake = await FakeBus.start();
          t.teardown(() => fake.close());
          await runScenario(scenario, { busUrl: fake.url, fake, run }, factory(t));
        } else {
          if (!gateway) throw new Error('no gateway');
          await runScenario(scenario, { busUrl: gateway.busUrl, run }, factory(t));
        }
        t.pass('every step held');
      });
    }
  }
});
