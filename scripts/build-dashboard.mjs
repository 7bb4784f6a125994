// Bundles the dashboard's browser code (src/dashboard/main.ts) into
// public/build/dashboard.js. The client is not bundled in again: imports of
// src/client/browser.ts load the client's own browser build
// (public/build/brainstem-client.js, from `npm run build:client`).
import { build } from 'esbuild';

const sharedClient = {
  name: 'shared-client',
  setup(bundle) {
    bundle.onResolve({ filter: /\/client\/browser\.js$/ }, () => ({ path: './brainstem-client.js', external: true }));
  },
};

await build({
  entryPoints: ['src/dashboard/main.ts'],
  outfile: 'public/build/dashboard.js',
  bundle: true,
  format: 'esm',
  target: 'es2020',
  minify: true,
  sourcemap: true,
  legalComments: 'none',
  plugins: [sharedClient],
  logLevel: 'warning',
});
