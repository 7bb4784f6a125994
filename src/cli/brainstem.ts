#!/usr/bin/env node
import { main } from './main.js';

const status = await main(process.argv.slice(2));
// null: `brainstem start` runs the gateway, which owns the process from here.
// stdout and stderr are synchronous on pipes and files here, so exit loses nothing.
if (status !== null) process.exit(status);
