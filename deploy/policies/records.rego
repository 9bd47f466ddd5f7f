# The seed's fine-grained rules, run by phantom-authz after the scope check (route context extension
# `policy: records/allow`). The input is opa-envoy-plugin's document plus `input.token`, the verified token.
package records

import rego.v1

default allow := false

# Only the owner may read a record: GET /records/<owner>/...
allow if {
	input.attributes.request.http.method == "GET"
	plain_path
	input.parsed_path[0] == "records"
	input.parsed_path[1] == input.token.subject
}

# Defence in depth: phantom-authz refuses paths not in normal form (400) before any policy runs, but a rule keyed on
# one segment must not trust that: `/records/alice/../bob/profile` names bob's record to an upstream that resolves
# dot segments. Every segment is a plain name: no dot segment (also `..;`), no empty segment, no slash or backslash.
plain_path if {
	every segment in input.parsed_path {
		segment != ""
		not split(segment, ";")[0] in {".", ".."}
		not contains(segment, "/")
		not contains(segment, "\\")
	}
}

# Separation of duty: POST /records/<owner>/transactions/<id>/approve needs the `approve` scope, and nobody
# approves a transaction they created (the creator comes from the JSON body's `created_by`, else from the
# `x-transaction-creator` header). Both are the client's words: this shows the rule's shape, and stops a client that
# tells the truth, not one that lies about the creator. A real deployment reads the creator from data the client does
# not write (OPA `data` pushed by the system of record, or the upstream's own check).
allow if {
	input.attributes.request.http.method == "POST"
	plain_path
	count(input.parsed_path) == 5
	input.parsed_path[0] == "records"
	input.parsed_path[2] == "transactions"
	input.parsed_path[4] == "approve"
	"approve" in input.token.scopes
	creator := transaction_creator
	creator != input.token.subject
}

transaction_creator := input.parsed_body.created_by if {
	is_string(input.parsed_body.created_by)
} else := input.attributes.request.http.headers["x-transaction-creator"]

# The same decision as an opa-envoy-plugin result object, with a reason for the client on denial.
decision := {"allowed": true, "headers": {"x-authz-policy": "records"}} if allow

decision := {
	"allowed": false,
	"http_status": 403,
	"headers": {"content-type": "application/json"},
	"body": json.marshal({"error": "forbidden", "error_description": reason}),
} if not allow

reason := "approver created this transaction (separation of duty)" if {
	input.parsed_path[4] == "approve"
	transaction_creator == input.token.subject
} else := "only the record's owner may read it"
