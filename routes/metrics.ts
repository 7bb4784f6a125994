import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

/** `GET /metrics`: Prometheus text format (an admin token when tokens are on: access-policy). */
const metricsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/metrics', { schema: { response: { 200: Type.String() } } }, async (_request, reply) => {
    const body = await app.metrics.metrics();
    return reply.type(app.metrics.contentType).send(body);
  });
};

export default metricsRoutes;
