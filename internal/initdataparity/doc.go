// Package initdataparity holds only a test: that the KBS and the agent read initdata alike.
// One corpus of documents, good and bad, goes through the function the KBS uses to read an
// attest request's init-data (attestation/kbs/builtin ReadInitData, for the digest it binds
// and the claims it issues) and the agent's launch check (agent/launch Measured); both must
// accept and refuse the same documents and compute the same digest. It lives here because a
// test importing both the KBS server and the agent fits no package of either side (the
// agent never imports attestation/kbs, internal/design TestImportRules); its test file is
// not part of any binary.
package initdataparity
