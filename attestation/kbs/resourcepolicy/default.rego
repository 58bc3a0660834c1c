# Veil KBS default resource policy: tenants are isolated.
#
# input: the claims of the attestation token (an EAR: submods.<name>["ear.status"], and the
#        verified claims in submods.<name>["ear.veraison.annotated-evidence"], init_data among
#        them: the initdata digest the TEE measured at launch).
# data:  {"plugin": "resource", "resource-path": "/<repository>/<type>/<tag>", "query": {},
#         "repository-init-data": [the initdata digests bound to <repository>]}
#
# A resource is released when the request is for the resource plugin, every appraised
# submodule of the token is "affirming", and either the resource is in the shared repository
# "default" or the guest's measured initdata digest is bound to the resource's repository
# (POST /kbs/v0/repository-binding/<repository>, `veil-kbs-client bind-repository`). A guest
# of one tenant therefore never reads another tenant's repository, and a repository bound to
# no initdata is released to nobody. Replace this policy with POST /kbs/v0/resource-policy to
# grant resources otherwise.
package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	count(input.submods) > 0
	not any_not_affirming
	repository_open
}

any_not_affirming if {
	some submod in input.submods
	submod["ear.status"] != "affirming"
}

repository_open if startswith(data["resource-path"], "/default/")

repository_open if {
	count(data["repository-init-data"]) > 0
	every submod in input.submods {
		submod["ear.veraison.annotated-evidence"].init_data in data["repository-init-data"]
	}
}
