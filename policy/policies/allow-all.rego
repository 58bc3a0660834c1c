# Veil's allow-all agent policy: every request of the agent API is allowed. It is the default
# when tee = "none", where the host is trusted and nothing is measured. One rule per request
# message type, so that the policy keeps working the same way as any other (and a request type
# added to the API without a rule here is denied, which a test catches).
package agent_policy

default CheckRequest := true
default VersionRequest := true
default GetGuestDetailsRequest := true
default CreateSandboxRequest := true
default DestroySandboxRequest := true
default SetGuestTimeRequest := true
default CopyFileRequest := true
default SetPolicyRequest := true
default CreateContainerRequest := true
default StartContainerRequest := true
default RemoveContainerRequest := true
default StatsContainerRequest := true
default PauseContainerRequest := true
default ResumeContainerRequest := true
default UpdateContainerRequest := true
default ExecProcessRequest := true
default SignalProcessRequest := true
default WaitProcessRequest := true
default ListProcessesRequest := true
default WriteStreamRequest := true
default CloseStdinRequest := true
default ReadStreamRequest := true
default TtyWinResizeRequest := true
default GetEventRequest := true
default UpdateInterfaceRequest := true
default UpdateRoutesRequest := true
default ListInterfacesRequest := true
default ListRoutesRequest := true
default AddARPNeighborsRequest := true
default ReadDecisionLogRequest := true
default OpenPortRequest := true
default WritePortRequest := true
default ReadPortRequest := true
default ClosePortRequest := true
