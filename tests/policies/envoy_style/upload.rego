# An upload endpoint's policy in the style of OPA's Envoy primer: it reads a multipart/form-data body from
# parsed_body ({name: [values]}, a file part's content as its value) and checks the form's signature with
# crypto.hmac.* (issue 16 item 6: both work in the embedded engine as in opa-envoy-plugin).
package envoy.upload

import rego.v1

upload_key := "demo-upload-key"

default allow := false

allow if {
	input.attributes.request.http.method == "POST"
	input.parsed_body.kind == ["image"]
	[content] := input.parsed_body.file
	[signature] := input.parsed_body.signature
	crypto.hmac.equal(signature, crypto.hmac.sha256(content, upload_key))
}
