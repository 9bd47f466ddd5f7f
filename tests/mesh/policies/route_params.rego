# The Istio-shaped tests' policy (tests/mesh/test_istio_shaped.py), run after the scope check. It reads the route
# rule phantom-authz matched instead of parsing the path: rule "records-read" has the path template
# "/records/{owner}/**", so the owner arrives percent-decoded as input.route.params.owner. Only the owner reads.
package route_params

import rego.v1

default owner := {"allowed": false}

owner := {"allowed": true, "headers": {"x-route-rule": input.route.name}} if {
	input.route.params.owner == input.token.subject
}

# Rule "records-write": the JSON body must name the record's owner. The body reaches the check whole (Istio's
# includeRequestBodyInCheck; with packAsBytes Envoy sends it as raw_body over gRPC) and arrives as parsed_body.
default body_names_owner := {"allowed": false}

body_names_owner := {"allowed": true} if {
	input.parsed_body.owner == input.route.params.owner
}
