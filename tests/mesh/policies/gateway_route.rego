# The Envoy Gateway-shaped tests' policy (tests/mesh/test_envoy_gateway_shaped.py). It reads the HTTPRoute the
# request matched from route_metadata_context (namespace envoy-gateway: kind, namespace, name, sectionName and the
# gateway.envoyproxy.io/ annotations, prefix stripped). Only routes annotated tier: gold pass. gRPC only: Envoy's
# HTTP ext_authz mode sends no metadata (phantom-authz refuses such a policy with server.http at start).
package gateway_route

import rego.v1

route := input.attributes.routeMetadataContext.filterMetadata["envoy-gateway"].resources[0]

default gold_tier := {"allowed": false}

gold_tier := {"allowed": true, "headers": {"x-http-route": concat("/", [route.name, route.sectionName])}} if {
	route.annotations.tier == "gold"
}
