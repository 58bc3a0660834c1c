# Veil's default appraisal policy (OPA v1 Rego).
#
# input.tee        "snp" or "tdx"
# input.claims     the verified claims (verifier.Claims.Raw; keys in docs/attestation.md)
# input.reference  the reference values of that TEE, defaults filled in
#
# Output: trustworthiness_vector (AR4SI claims: 0 no claim, 2..31 affirming, 32..95 warning,
# 96..127 contraindicated) and reasons (why a claim is not affirming). The verifier has already
# checked signatures, REPORT_DATA and, when the request had initdata, HOST_DATA/MRCONFIGID.
package veil.appraisal

c := input.claims

ref := input.reference

# The evidence is bound to the session key (REPORT_DATA): a unique, fresh instance.
instance_identity := 2

# The launch configuration: the initdata digest the TEE measured, and the TEE's own settings.
configuration := 96 if {
	count(config_violations) > 0
} else := 2 if {
	c.init_data_checked
} else := 0

# What was launched: the measurement(s) against the reference values.
executables := 96 if {
	count(executable_violations) > 0
} else := 33 if {
	no_executable_references
} else := 2

# Genuine, up-to-date TEE hardware and firmware; a sim TEE is never genuine hardware.
hardware := 96 if {
	count(tcb_violations) > 0
} else := 32 if {
	c.simulated
	not ref.allow_simulated
} else := 2

# Memory is encrypted and opaque to the host: true of a real TEE only.
runtime_opaque := 2 if not c.simulated

default runtime_opaque := 0

trustworthiness_vector := {
	"instance-identity": instance_identity,
	"configuration": configuration,
	"executables": executables,
	"file-system": 0,
	"hardware": hardware,
	"runtime-opaque": runtime_opaque,
	"storage-opaque": 0,
	"sourced-data": 0,
}

reasons contains msg if some msg in config_violations

reasons contains msg if some msg in executable_violations

reasons contains msg if some msg in tcb_violations

reasons contains "no reference measurements: any measurement is accepted (executables 33)" if no_executable_references

reasons contains "simulated TEE: not genuine hardware (hardware 32); set allow_simulated to accept it" if {
	c.simulated
	not ref.allow_simulated
}

# ---- configuration ----

config_violations contains "debugging is enabled (DEBUG) and the reference values forbid it" if {
	c.debug
	not ref.allow_debug
}

snp_permissive := {"smt": "policy_smt_allowed", "migrate_ma": "policy_migrate_ma", "cxl_allowed": "policy_cxl_allowed"}

snp_restrictive := {
	"single_socket": "policy_single_socket",
	"mem_aes_256_xts": "policy_mem_aes_256_xts",
	"rapl_dis": "policy_rapl_dis",
	"ciphertext_hiding": "policy_ciphertext_hiding",
	"page_swap_disable": "policy_page_swap_disable",
}

config_violations contains sprintf("guest policy flag %s is set and not in allowed_policy_flags", [flag]) if {
	input.tee == "snp"
	some flag, claim in snp_permissive
	c[claim]
	not flag in ref.allowed_policy_flags
}

config_violations contains sprintf("guest policy flag %s is required and not set", [flag]) if {
	input.tee == "snp"
	some flag in ref.required_policy_flags
	not c[snp_restrictive[flag]]
}

config_violations contains sprintf("VMPL is %d, want %d", [c.vmpl, ref.vmpl]) if {
	input.tee == "snp"
	ref.vmpl != null
	c.vmpl != ref.vmpl
}

config_violations contains sprintf("GUEST_SVN %d is below the minimum %d", [c.guest_svn, ref.minimum_guest_svn]) if {
	input.tee == "snp"
	c.guest_svn < ref.minimum_guest_svn
}

# ---- executables ----

no_executable_references if {
	input.tee == "snp"
	count(ref.measurements) == 0
}

no_executable_references if {
	input.tee == "tdx"
	count(ref.mr_td) == 0
}

executable_violations contains sprintf("measurement %s is not in the reference values", [c.measurement]) if {
	input.tee == "snp"
	count(ref.measurements) > 0
	not c.measurement in ref.measurements
}

executable_violations contains sprintf("%s %s is not in the reference values", [name, c[name]]) if {
	input.tee == "tdx"
	some name in ["mr_td", "rtmr_0", "rtmr_1", "rtmr_2", "rtmr_3"]
	count(ref[name]) > 0
	not c[name] in ref[name]
}

# ---- TCB ----

tcb_violations contains sprintf("reported TCB %s %d is below the minimum %d", [part, have, least]) if {
	input.tee == "snp"
	ref.minimum_tcb != null
	some part, least in ref.minimum_tcb
	have := object.get(c.tcb.reported, part, 0)
	have < least
}

tcb_violations contains sprintf("TEE_TCB_SVN %s is below the minimum %s", [c.tcb_svn, ref.minimum_tee_tcb_svn]) if {
	input.tee == "tdx"
	ref.minimum_tee_tcb_svn != ""
	some i in numbers.range(0, 15)
	substring(c.tcb_svn, 2 * i, 2) < substring(ref.minimum_tee_tcb_svn, 2 * i, 2)
}

# Without allowed_tcb_statuses a status the verifier found (collateral_dir, fetch_collateral)
# must be UpToDate: other statuses are allowed only when listed.
tcb_violations contains sprintf("TCB status %s is not allowed (by default only UpToDate; list others in tdx.allowed_tcb_statuses)", [c.tcb_status]) if {
	input.tee == "tdx"
	count(ref.allowed_tcb_statuses) == 0
	object.get(c, "tcb_status", "") != ""
	c.tcb_status != "UpToDate"
}

tcb_violations contains "TCB status not checked against Intel's TCB info (the verifier needs collateral_dir or fetch_collateral)" if {
	input.tee == "tdx"
	count(ref.allowed_tcb_statuses) > 0
	object.get(c, "tcb_status", "") == ""
}

tcb_violations contains sprintf("TCB status %s is not allowed (allowed: %s)", [c.tcb_status, concat(", ", ref.allowed_tcb_statuses)]) if {
	input.tee == "tdx"
	count(ref.allowed_tcb_statuses) > 0
	object.get(c, "tcb_status", "") != ""
	not c.tcb_status in ref.allowed_tcb_statuses
}
