import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { presentedToken, tokenRefusal } from '../plugins/auth.js';
import { OPEN_PRINCIPAL } from '../src/bus/principal.js';
import { ErrorBody } from './errors.js';

const Session = Type.Object({
  /** Tokens are configured: every other route needs one. */
  auth: Type.Boolean(),
  /** The token's name; null when auth is off. */
  name: Type.Union([Type.String(), Type.Null()]),
  /** May retry, remove, pause and resume (always true when auth is off). */
  admin: Type.Boolean(),
  /** Live instances each service name may have (from the ecosystem file); names not listed are unlimited. */
  instanceLimits: Type.Record(Type.String(), Type.Integer()),
});

/**
 * `GET /dashboard/session`: what the dashboard at `/` needs to know about
 * its caller before it draws anything — whether to ask for a token, whether
 * to offer the admin's buttons — and the instance limits, which no other
 * route reports.
 */
const dashboardRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/dashboard/session', {
    schema: { response: { 200: Session, 401: ErrorBody } },
  }, async (request) => {
    const { principal } = request;
    const auth = principal !== OPEN_PRINCIPAL;
    if (auth && principal.name === null) {
      throw tokenRefusal(presentedToken(request));
    }
    return {
      auth,
      name: principal.name,
      admin: principal.admin,
      instanceLimits: Object.fromEntries(app.heartbeat.limits.limits),
    };
  });
};

export default dashboardRoutes;
