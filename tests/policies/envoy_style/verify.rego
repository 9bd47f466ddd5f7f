# OPA's documented io.jwt.decode_verify with a JWKS `cert` taken from data (data.json beside this file).
package envoy.verify

import rego.v1

default allow := false

allow if {
	[_, token] := split(input.attributes.request.http.headers.authorization, " ")
	[valid, _, payload] := io.jwt.decode_verify(token, {"cert": json.marshal(data.envoy.jwks), "aud": "api.example.com"})
	valid
	payload.sub == input.parsed_path[1]
}
