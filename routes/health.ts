import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

const Dependency = Type.Object({ ok: Type.Boolean(), required: Type.Boolean(), detail: Type.Optional(Type.String()) });
const Health = Type.Object({ status: Type.String(), dependencies: Type.Record(Type.String(), Dependency) });

/** `GET /health`: 200 when every required dependency is up, 503 otherwise. */
const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/health', { schema: { response: { 200: Health, 503: Health } } }, async (_request, reply) => {
    const { ok, dependencies } = await app.health.report();
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'degraded', dependencies });
  });
};

export default healthRoutes;
