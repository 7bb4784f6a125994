import fp from 'fastify-plugin';
import { OPEN_PRINCIPAL, type Principal } from '../src/bus/principal.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling: what its token allows (everything when auth is off). */
    principal: Principal;
  }
}

/**
 * Gives every request a principal before any handler or WebSocket upgrade
 * runs. With no tokens configured everyone is the open principal.
 */
export default fp(async function authPlugin(app) {
  app.decorateRequest('principal', null as unknown as Principal);
  app.addHook('onRequest', async (request) => {
    request.principal = OPEN_PRINCIPAL;
  });
}, { name: 'brainstem-auth' });
