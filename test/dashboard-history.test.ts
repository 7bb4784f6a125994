import t from 'tap';
import { dashboardSession, textBecomes } from './helpers/dashboard-browser.js';

const { dashboard, post } = await dashboardSession(t, {
  busHistory: [{ topics: 'agent.>', maxEvents: 1000, maxAgeSeconds: null }, { topics: 'queue.>', maxEvents: 1000, maxAgeSeconds: null }],
});

t.test('the event tail opens with the last retained events, then goes on live without showing one twice', async (t) => {
  for (const text of ['first', 'second']) {
    t.equal((await post('/bus/publish', { type: 'agent.cephalon.reply', payload: { text } })).status, 202);
  }
  t.equal((await post('/bus/publish', { type: 'fs.change', payload: { path: 'not kept' } })).status, 202);
  const { page, problems } = await dashboard(t);
  const rows = page.locator('#tail-list li');
  await textBecomes(t, page.locator('#tail-status'), '2 shown · 2/1000 kept', 'the retained events, and only those, are there on open');
  t.match(await rows.nth(0).textContent(), /second/, 'newest first');
  t.match(await rows.nth(1).textContent(), /first/);

  t.equal((await post('/bus/publish', { type: 'agent.cephalon.reply', payload: { text: 'live' } })).status, 202);
  await textBecomes(t, rows.first(), /live/, 'a live event follows on top');
  await textBecomes(t, page.locator('#tail-status'), '3 shown · 3/1000 kept', 'each once');

  await page.locator('#tail-filter').fill('agent.cephalon.*');
  await page.locator('#tail-filter').press('Enter');
  await textBecomes(t, page.locator('#tail-status'), '3 shown · 3/1000 kept', 'a narrower filter on a retained rule: no event twice');
  t.same(problems, [], 'no console errors');
});
