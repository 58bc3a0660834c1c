# Veil KBS default resource policy.
#
# input: the claims of the attestation token (an EAR: submods.<name>["ear.status"], ...).
# data:  {"plugin": "resource", "resource-path": "/<repository>/<type>/<tag>", "query": {}}
#
# A resource is released when the request is for the resource plugin and every appraised
# submodule of the token is "affirming". Replace this policy with POST /kbs/v0/resource-policy
# to grant resources per measurement, host data, or path.
package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	count(input.submods) > 0
	not any_not_affirming
}

any_not_affirming if {
	some submod in input.submods
	submod["ear.status"] != "affirming"
}
