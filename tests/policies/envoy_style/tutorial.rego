# Written for phantom-authz's portability tests in the style of OPA's Envoy tutorial: the policy decodes the JWT
# from the Authorization header itself, as policies written for JWT-bearing Envoy traffic do.
package envoy.authz

import rego.v1

default allow := false

http_request := input.attributes.request.http

bearer := token if {
	[scheme, token] := split(http_request.headers.authorization, " ")
	lower(scheme) == "bearer"
}

claims := payload if {
	[_, payload, _] := io.jwt.decode(bearer)
}

allow if {
	http_request.method == "GET"
	glob.match("/people/*", ["/"], http_request.path)
	"read" in split(claims.scope, " ")
}

allow if {
	http_request.method == "POST"
	http_request.path == "/people"
	claims.sub == "admin-user"
}
