// Stage 2, after the package is published:
//   az deployment group create -g <rg> -f infra/subscriptions.bicep -p infra/subscriptions.bicepparam
using './subscriptions.bicep'

param prefix = 'socwire'
param subscribeMlRunStatus = false
