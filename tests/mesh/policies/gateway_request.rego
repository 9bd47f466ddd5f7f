# The Envoy Gateway-shaped tests' policy in HTTP mode (tests/mesh/test_envoy_gateway_shaped.py). Envoy's HTTP
# ext_authz sends no route metadata (a policy reading input.attributes.routeMetadataContext is refused at start with
# server.http), so this one reads what HTTP mode does send: the method, and the route rule phantom-authz matched.
# The records are read-only through the Gateway.
package gateway_request

import rego.v1

default read_only := {"allowed": false}

read_only := {"allowed": true, "headers": {"x-route-rule": input.route.name}} if {
	input.attributes.request.http.method in {"GET", "HEAD"}
}
