/** WebSocket close codes the gateway uses. No Node imports: the clients share this file. */
export const CloseCode = {
  GOING_AWAY: 1001,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  /** The connection's process stopped beating: its tasks were revoked (v2 §3). */
  HEARTBEAT_LAPSED: 4001,
} as const;
