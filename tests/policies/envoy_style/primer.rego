# Written for phantom-authz's portability tests in the style of OPA's Envoy primer: an object decision with
# headers, status and body, reading parsed_path, parsed_query and parsed_body.
package envoy.primer

import rego.v1

default allow := false

allow if {
	input.attributes.request.http.method == "GET"
	input.parsed_path == ["api", "v1", "products"]
}

allow if {
	input.attributes.request.http.method == "POST"
	input.parsed_path == ["api", "v1", "orders"]
	input.parsed_body.quantity <= 10
	input.parsed_query.channel == ["web"]
}

result["allowed"] := allow

result["headers"] := {"x-ext-auth-allow": "yes", "x-validated-by": "primer"} if allow

result["request_headers_to_remove"] := ["x-internal-debug"] if allow

result["response_headers_to_add"] := {"x-policy": "primer"} if allow

result["http_status"] := 418 if not allow

result["headers"] := {"x-ext-auth-allow": "no"} if not allow

result["body"] := "Unauthorized Request" if not allow
