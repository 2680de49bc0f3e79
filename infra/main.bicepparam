// Example parameters for stage 1. Copy, set sentinelWorkspaceName, then:
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
using './main.bicep'

param prefix = 'socwire'
param sentinelWorkspaceName = 'sentinel-workspace'

// Premium (EP1) runs the package from blob storage with the app identity; FlexConsumption is
// the pay-per-use alternative (see docs/deploying.md, "Hosting plans").
param hostingPlan = 'Premium'

// alert-stream keeps one window per Event Hubs partition, so up to one instance per partition
// helps it (docs/deploying.md, "Scale").
param maximumInstances = 4

// Providers whose keys you put in Key Vault (secrets ti-<provider>-key): virustotal, abuseipdb,
// greynoise, otx. None by default: triage uses the offline list and Sentinel's own TI.
param tiProviders = []

param sweepSchedule = '0 */10 * * * *'
param alertWindow = '24h'

// An Azure ML workspace in the same resource group turns on the ML roles and the system topic.
param azureMlWorkspaceName = ''
// With a workspace: the fine-tune jobs' image, built from infra/job-image/Dockerfile
// (docs/deploying.md, "Job image"), e.g. '<registry>.azurecr.io/socwire-job:0.1.0'.
param mlJobImage = ''
