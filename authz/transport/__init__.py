"""The transports: each translates its wire request into a ``RequestInfo`` and the pipeline's answer back.

- gRPC (``envoy.service.auth.v3.Authorization``, the primary interface): ``grpc_request`` (CheckRequest ->
  RequestInfo), ``grpc_service`` (the servicer), ``grpc_server``
  (the listener with grpc.health.v1), ``health_probe`` (the ``authz health`` client of grpc.health.v1).
- Envoy's HTTP ext_authz mode: ``http_server`` (the listener and its answers), on ``http_protocol`` (one connection
  over httptools' llhttp parser), ``http_limits`` (the limits and the requests answered without the pipeline),
  ``http_connections`` (the timeouts' sweep and the drain), ``http_wire`` (answers as bytes) and ``eager`` (a cache
  hit answered without a task); ``http_request`` (check path and headers -> RequestInfo), ``http_response``
  (CheckResponse -> HTTP answer), ``http_gaps`` (what HTTP mode cannot give a policy).

No decision logic lives here: ``authz.pipeline.Authorizer.decide`` decides for both.
"""
