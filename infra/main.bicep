// socwire, stage 1 of 2: every Azure resource the function set needs, the app's user-assigned
// managed identity and every role it holds. Nothing here refers to a function, so this stage
// deploys before the code exists; stage 2 (subscriptions.bicep) subscribes the functions to
// Event Grid once the package is published (ARM rejects a subscription to a function that the
// host has not indexed yet).
//
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
//   (publish app.zip: docs/deploying.md)
//   az deployment group create -g <rg> -f infra/subscriptions.bicep -p prefix=<same prefix>
//
// Names in the function definitions (queues, hubs, topics, subscriptions, connection settings)
// and the settings the handler reads are checked against this file by
// handlers/tests/deploy_consistency.rs; change both sides together.

targetScope = 'resourceGroup'

@description('Name prefix for every resource (lower-case letters, digits, hyphens).')
@minLength(3)
@maxLength(12)
param prefix string = 'socwire'

@description('Region.')
param location string = resourceGroup().location

@description('Log Analytics workspace with Microsoft Sentinel enabled, in this resource group.')
param sentinelWorkspaceName string

@description('Premium (EP1, Linux; runs from a package blob) or FlexConsumption (FC1). Premium is the default: it is the plan the custom handler was checked against.')
@allowed([
  'Premium'
  'FlexConsumption'
])
param hostingPlan string = 'Premium'

@description('Most instances the app scales out to. alert-stream keeps one alert window per Event Hubs partition and commits it with conditional writes (decision 0005), so instances may share the hub; more instances than eventHubPartitions add nothing to alert-stream.')
@minValue(1)
@maxValue(100)
param maximumInstances int = 4

@description('Blob name of the package in the app-package container (Premium runs from it).')
param packageBlobName string = 'app.zip'

@description('Threat-intelligence providers to turn on; each needs its key in Key Vault as secret ti-<provider>-key (docs/deploying.md).')
param tiProviders array = []

@description('NCRONTAB schedule of incident-sweep.')
param sweepSchedule string = '0 */10 * * * *'

@description('How long a triage report link stays valid (empty: the handler default).')
param reportLinkLifetime string = '72h'

@description('Alert engine window, e.g. 24h.')
param alertWindow string = '24h'

@description('Subgraphs scoring at least this publish socwire.AlertSubgraphPrioritized.')
param alertEventScore string = '20'

// Memory of one instance: FC1 as configured below, EP1 3.5 GB. Half of it is the alert engine's
// budget across every Event Hubs partition an instance holds (SOCWIRE_ALERT_MEMORY_MB).
var instanceMemoryMB = isFlex ? 2048 : 3584

@description('Azure Machine Learning workspace in this resource group for the GPU functions (empty: none; the ML roles and system topic are left out).')
param azureMlWorkspaceName string = ''

@description('Container image of the fine-tune jobs, built from infra/job-image/Dockerfile and pushed to a registry the workspace pulls from (required with azureMlWorkspaceName).')
param mlJobImage string = ''

@description('Hosts the ML functions may download model assets from (comma-separated).')
param mlAssetHosts string = 'api.ngc.nvidia.com'

@description('Partitions per event hub (fixed once created on Standard).')
@minValue(1)
@maxValue(32)
param eventHubPartitions int = 4

@description('Handler log filter (tracing env-filter syntax).')
param logFilter string = 'info'

var suffix = uniqueString(resourceGroup().id, prefix)
var storageName = take(toLower(replace('${prefix}${suffix}', '-', '')), 24)
var eventGridSubscriptions = loadJsonContent('eventgrid-subscriptions.json')
var serviceBusSubscriptions = loadJsonContent('servicebus-subscriptions.json')

// Logical Event Grid topic names (the names the function set and eventgrid-subscriptions.json
// use) and the Azure names they get (custom topic names are part of a regional DNS name).
var eventGridTopicNames = [
  'sentinel-incidents'
  'socwire-events'
]
// Storage queues the functions read or write, each with the poison queue the host moves a
// message to after maxDequeueCount deliveries (host.json).
var queueNames = [
  'triage-requests'
  'socwire-rejects'
]
// Blob containers: the handler's ledger, reports and alert-engine state (SOCWIRE_*_CONTAINER),
// Event Grid dead letters, and the package Premium runs from / Flex deploys to.
var containerNames = [
  'socwire-ledger'
  'socwire-reports'
  'socwire-state'
  'eventgrid-deadletters'
  'app-package'
]
var eventHubNames = [
  'alerts'
  'training-telemetry'
]
// Each hub's retention (messageRetentionInDays); `socwire up` drops local events after the
// same period (infra/eventhubs.json is read by both).
var eventHubSettings = loadJsonContent('eventhubs.json')
var serviceBusTopicNames = [
  'ml-commands'
]
var tiSecretSettings = {
  virustotal: 'SOCWIRE_TI_VIRUSTOTAL_KEY'
  abuseipdb: 'SOCWIRE_TI_ABUSEIPDB_KEY'
  greynoise: 'SOCWIRE_TI_GREYNOISE_KEY'
  otx: 'SOCWIRE_TI_OTX_KEY'
}
var hasMl = !empty(azureMlWorkspaceName)

// Built-in role definition ids.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  sentinelResponder: '3e150937-b8fe-4cfb-8069-0eaf05ecd056'
  logAnalyticsReader: '73c42c96-874c-492b-b04d-ab87d138a893'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  azureMlDataScientist: 'f6c7c914-8db3-469d-8ca1-694a8f32e121'
  azureMlComputeOperator: 'e503ece1-11d0-4e8e-8e2c-7a6c3bf38815'
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  managedIdentityOperator: 'f1a07417-d97a-45cb-824c-7a7467783830'
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: sentinelWorkspaceName
}

// ---------------------------------------------------------------- identity

// One user-assigned identity for the app: roles are granted before the app exists, so the
// first start already has them, and every identity-based connection names it (__clientId).
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${prefix}-app-identity'
  location: location
}

// The identity of the GPU clusters provision-gpu-cluster creates (SOCWIRE_ML_CLUSTER_IDENTITY):
// fine-tune jobs send their telemetry to the training-telemetry hub as it.
resource mlJobIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (hasMl) {
  name: '${prefix}-ml-jobs'
  location: location
}

// ---------------------------------------------------------------- storage

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    supportsHttpsTrafficOnly: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for c in containerNames: {
  parent: blobService
  name: c
  properties: { publicAccess: 'None' }
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for q in queueNames: {
  parent: queueService
  name: q
}]

resource poisonQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for q in queueNames: {
  parent: queueService
  name: '${q}-poison'
}]

// ---------------------------------------------------------------- monitoring

// Application Insights on a workspace of its own: telemetry in the Sentinel workspace would be
// billed at Sentinel rates.
resource telemetryWorkspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${prefix}-telemetry-${suffix}'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${prefix}-insights'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: telemetryWorkspace.id
    DisableLocalAuth: true
  }
}

// Custom tables the alert stream writes through the Logs Ingestion API (ALERTS.md).
resource subgraphTable 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: 'AlertSubgraphs_CL'
  properties: {
    schema: {
      name: 'AlertSubgraphs_CL'
      columns: [
        { name: 'TimeGenerated', type: 'datetime' }
        { name: 'RowKey', type: 'string' }
        { name: 'SubgraphId', type: 'string' }
        { name: 'Rank', type: 'int' }
        { name: 'Score', type: 'real' }
        { name: 'FirstSeen', type: 'datetime' }
        { name: 'LastSeen', type: 'datetime' }
        { name: 'NodeCount', type: 'int' }
        { name: 'EdgeCount', type: 'int' }
        { name: 'AlertCount', type: 'int' }
        { name: 'LongestPath', type: 'int' }
        { name: 'CrossesItOt', type: 'boolean' }
        { name: 'Nodes', type: 'dynamic' }
        { name: 'Edges', type: 'dynamic' }
        { name: 'AlertIds', type: 'dynamic' }
        { name: 'Reasons', type: 'dynamic' }
        { name: 'AlertIdsOmitted', type: 'int' }
        { name: 'Truncated', type: 'boolean' }
        { name: 'Path', type: 'dynamic' }
        { name: 'Evidence', type: 'dynamic' }
        { name: 'Shape', type: 'string' }
      ]
    }
    retentionInDays: 90
  }
}

resource rejectTable 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: 'AlertRejects_CL'
  properties: {
    schema: {
      name: 'AlertRejects_CL'
      columns: [
        { name: 'TimeGenerated', type: 'datetime' }
        { name: 'RowKey', type: 'string' }
        { name: 'AlertId', type: 'string' }
        { name: 'Reason', type: 'string' }
        { name: 'Body', type: 'string' }
      ]
    }
    retentionInDays: 30
  }
}

resource dce 'Microsoft.Insights/dataCollectionEndpoints@2023-03-11' = {
  name: '${prefix}-dce'
  location: location
  properties: {
    networkAcls: { publicNetworkAccess: 'Enabled' }
  }
}

resource dcr 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: '${prefix}-alert-tables'
  location: location
  properties: {
    dataCollectionEndpointId: dce.id
    streamDeclarations: {
      'Custom-AlertSubgraphs': {
        columns: [
          { name: 'TimeGenerated', type: 'datetime' }
          { name: 'RowKey', type: 'string' }
          { name: 'SubgraphId', type: 'string' }
          { name: 'Rank', type: 'int' }
          { name: 'Score', type: 'real' }
          { name: 'FirstSeen', type: 'datetime' }
          { name: 'LastSeen', type: 'datetime' }
          { name: 'NodeCount', type: 'int' }
          { name: 'EdgeCount', type: 'int' }
          { name: 'AlertCount', type: 'int' }
          { name: 'LongestPath', type: 'int' }
          { name: 'CrossesItOt', type: 'boolean' }
          { name: 'Nodes', type: 'dynamic' }
          { name: 'Edges', type: 'dynamic' }
          { name: 'AlertIds', type: 'dynamic' }
          { name: 'Reasons', type: 'dynamic' }
          { name: 'AlertIdsOmitted', type: 'int' }
          { name: 'Truncated', type: 'boolean' }
          { name: 'Path', type: 'dynamic' }
          { name: 'Evidence', type: 'dynamic' }
          { name: 'Shape', type: 'string' }
        ]
      }
      'Custom-AlertRejects': {
        columns: [
          { name: 'TimeGenerated', type: 'datetime' }
          { name: 'RowKey', type: 'string' }
          { name: 'AlertId', type: 'string' }
          { name: 'Reason', type: 'string' }
          { name: 'Body', type: 'string' }
        ]
      }
    }
    destinations: {
      logAnalytics: [
        { name: 'sentinel', workspaceResourceId: workspace.id }
      ]
    }
    dataFlows: [
      {
        streams: [ 'Custom-AlertSubgraphs' ]
        destinations: [ 'sentinel' ]
        transformKql: 'source'
        outputStream: 'Custom-AlertSubgraphs_CL'
      }
      {
        streams: [ 'Custom-AlertRejects' ]
        destinations: [ 'sentinel' ]
        transformKql: 'source'
        outputStream: 'Custom-AlertRejects_CL'
      }
    ]
  }
  dependsOn: [
    subgraphTable
    rejectTable
  ]
}

// ---------------------------------------------------------------- brokers

resource serviceBus 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: '${prefix}-sb-${suffix}'
  location: location
  sku: { name: 'Standard', tier: 'Standard' }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
}

resource sbTopics 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' = [for t in serviceBusTopicNames: {
  parent: serviceBus
  name: t
  properties: {
    // MessageId de-duplication: a command re-sent within 10 minutes is dropped.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    defaultMessageTimeToLive: 'P7D'
    supportOrdering: true
  }
}]

// One subscription per function, filtered on Subject (sys.Label), from the file the local
// host reads too. A message past maxDeliveryCount, expired or unmatched by a filter that
// throws goes to the subscription's dead-letter queue with its reason.
resource sbSubscriptions 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' = [for s in serviceBusSubscriptions: {
  name: '${serviceBus.name}/${s.topic}/${s.subscription}'
  properties: {
    maxDeliveryCount: s.maxDeliveryCount
    lockDuration: 'PT5M'
    deadLetteringOnMessageExpiration: true
    deadLetteringOnFilterEvaluationExceptions: true
  }
  dependsOn: [
    sbTopics
  ]
}]

// Replacing the $Default rule (which matches everything) with the Subject filter.
resource sbRules 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2022-10-01-preview' = [for (s, i) in serviceBusSubscriptions: {
  parent: sbSubscriptions[i]
  name: '$Default'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: contains(s, 'sqlFilter') ? s.sqlFilter : 'sys.Label IN (${join(map(s.subjects, subject => '\'${subject}\''), ', ')})'
    }
  }
}]

resource eventHubs 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: '${prefix}-eh-${suffix}'
  location: location
  sku: { name: 'Standard', tier: 'Standard', capacity: 1 }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
}

resource hubs 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = [for h in eventHubNames: {
  parent: eventHubs
  name: h
  properties: {
    partitionCount: eventHubPartitions
    messageRetentionInDays: eventHubSettings[h].retentionDays
  }
}]

// The functions read $Default (it always exists). `ops` is for people and tools reading a
// hub, so they never move the functions' checkpoints.
resource opsConsumerGroups 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = [for (h, i) in eventHubNames: {
  parent: hubs[i]
  name: 'ops'
}]

// Custom topics: local auth off, so only Entra ID callers holding EventGrid Data Sender
// publish. Their system identity writes dead letters.
resource topics 'Microsoft.EventGrid/topics@2024-06-01-preview' = [for t in eventGridTopicNames: {
  name: '${prefix}-${t}-${suffix}'
  location: location
  identity: { type: 'SystemAssigned' }
  properties: {
    inputSchema: 'EventGridSchema'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}]

// Azure ML publishes RunStatusChanged to a system topic on its workspace; stage 2 subscribes
// ml-run-status to it.
resource mlWorkspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = if (hasMl) {
  name: hasMl ? azureMlWorkspaceName : 'none'
}

resource mlSystemTopic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = if (hasMl) {
  name: '${prefix}-azureml-events'
  location: location
  identity: { type: 'SystemAssigned' }
  properties: {
    source: mlWorkspace.id
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

// ---------------------------------------------------------------- secrets

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: take('${prefix}-kv-${suffix}', 24)
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 30
    enablePurgeProtection: true
  }
}

// ---------------------------------------------------------------- the app

resource premiumPlan 'Microsoft.Web/serverfarms@2023-12-01' = if (hostingPlan == 'Premium') {
  name: '${prefix}-plan'
  location: location
  sku: { name: 'EP1', tier: 'ElasticPremium' }
  kind: 'elastic'
  properties: {
    reserved: true
    maximumElasticWorkerCount: maximumInstances
  }
}

resource flexPlan 'Microsoft.Web/serverfarms@2023-12-01' = if (hostingPlan == 'FlexConsumption') {
  name: '${prefix}-flex-plan'
  location: location
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  kind: 'functionapp'
  properties: { reserved: true }
}

var connectionIdentity = {
  credential: 'managedidentity'
  clientId: identity.properties.clientId
}

// Settings the handler and the bindings read (local.settings.example.json has the same names
// with local values). Identity-based connections: <name>__<endpoint> + __credential + __clientId.
var socwireSettings = [
  { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
  { name: 'AzureWebJobsStorage__accountName', value: storage.name }
  { name: 'AzureWebJobsStorage__credential', value: connectionIdentity.credential }
  { name: 'AzureWebJobsStorage__clientId', value: connectionIdentity.clientId }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsights.properties.ConnectionString }
  { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
  { name: 'SOCWIRE_REQUIRE_AZURE', value: 'true' }
  { name: 'SOCWIRE_LOG', value: logFilter }
  { name: 'SOCWIRE_MAX_BODY_BYTES', value: '268435456' }
  { name: 'SOCWIRE_SENTINEL_ENDPOINT', value: environment().resourceManager }
  { name: 'SOCWIRE_LA_WORKSPACE_ID', value: workspace.properties.customerId }
  { name: 'SOCWIRE_STORAGE', value: storage.properties.primaryEndpoints.blob }
  { name: 'SOCWIRE_LEDGER_CONTAINER', value: 'socwire-ledger' }
  { name: 'SOCWIRE_REPORTS_CONTAINER', value: 'socwire-reports' }
  { name: 'SOCWIRE_STATE_CONTAINER', value: 'socwire-state' }
  { name: 'SOCWIRE_REPORT_LINK_TTL', value: reportLinkLifetime }
  { name: 'SOCWIRE_LOGS_ENDPOINT', value: dce.properties.logsIngestion.endpoint }
  { name: 'SOCWIRE_LOGS_DCR_ID', value: dcr.properties.immutableId }
  { name: 'SOCWIRE_SWEEP_SCHEDULE', value: sweepSchedule }
  { name: 'SOCWIRE_ALERT_WINDOW', value: alertWindow }
  { name: 'SOCWIRE_ALERT_EVENT_SCORE', value: alertEventScore }
  { name: 'SOCWIRE_ALERT_MEMORY_MB', value: string(instanceMemoryMB / 2) }
  { name: 'SOCWIRE_EVENTS_TOPIC__topicEndpointUri', value: topics[1].properties.endpoint }
  { name: 'SOCWIRE_EVENTS_TOPIC__credential', value: connectionIdentity.credential }
  { name: 'SOCWIRE_EVENTS_TOPIC__clientId', value: connectionIdentity.clientId }
  { name: 'SOCWIRE_EVENTHUBS__fullyQualifiedNamespace', value: '${eventHubs.name}.servicebus.windows.net' }
  { name: 'SOCWIRE_EVENTHUBS__credential', value: connectionIdentity.credential }
  { name: 'SOCWIRE_EVENTHUBS__clientId', value: connectionIdentity.clientId }
  { name: 'SOCWIRE_SERVICEBUS__fullyQualifiedNamespace', value: '${serviceBus.name}.servicebus.windows.net' }
  { name: 'SOCWIRE_SERVICEBUS__credential', value: connectionIdentity.credential }
  { name: 'SOCWIRE_SERVICEBUS__clientId', value: connectionIdentity.clientId }
  { name: 'SOCWIRE_INVOCATION_TIMEOUT', value: '' }
  { name: 'SOCWIRE_LOG_FORMAT', value: 'json' }
  { name: 'SOCWIRE_LA_ENDPOINT', value: 'https://api.loganalytics.io' }
  { name: 'SOCWIRE_SENTINEL_SUBSCRIPTION_ID', value: subscription().subscriptionId }
  { name: 'SOCWIRE_SENTINEL_RESOURCE_GROUP', value: resourceGroup().name }
  { name: 'SOCWIRE_SENTINEL_WORKSPACE', value: sentinelWorkspaceName }
  { name: 'SOCWIRE_ML_ENDPOINT', value: environment().resourceManager }
  { name: 'SOCWIRE_ML_WORKSPACE', value: hasMl ? mlWorkspace.id : '' }
  { name: 'SOCWIRE_ML_LOCATION', value: location }
  { name: 'SOCWIRE_ML_DATASTORE_URL', value: '' }
  { name: 'SOCWIRE_SERVICEBUS_NAMESPACE', value: '${serviceBus.name}.servicebus.windows.net' }
  { name: 'SOCWIRE_ML_COMMANDS_TOPIC', value: 'ml-commands' }
  { name: 'SOCWIRE_NGC_ALLOWED_HOSTS', value: mlAssetHosts }
  { name: 'SOCWIRE_ML_LOCAL_ASSET_DIRS', value: '' }
  { name: 'SOCWIRE_ML_MAX_ASSET_BYTES', value: '4294967296' }
  { name: 'SOCWIRE_ML_MAX_UNPACKED_BYTES', value: '17179869184' }
  { name: 'SOCWIRE_ML_IMAGE', value: mlJobImage }
  { name: 'SOCWIRE_ML_TELEMETRY_EVENTHUB', value: hasMl ? 'https://${eventHubs.name}.servicebus.windows.net/training-telemetry' : '' }
  { name: 'SOCWIRE_ML_CLUSTER_IDENTITY', value: hasMl ? mlJobIdentity.id : '' }
  // Empty: derived from the location and the workspace id (azureml://<region>.api.azureml.ms/mlflow/v1.0/…).
  { name: 'SOCWIRE_ML_TRACKING_URI', value: '' }
  { name: 'SOCWIRE_ML_POLL_SECS', value: '30' }
  { name: 'SOCWIRE_ML_DIVERGENCE_EVALS', value: '3' }
  { name: 'SOCWIRE_ML_LOCAL_PROVISION_MS', value: '3000' }
  { name: 'SOCWIRE_ML_LOCAL_MAX_NODES', value: '8' }
  { name: 'SOCWIRE_ML_RUNNER', value: '' }
  { name: 'SOCWIRE_TRIAGE_RULE', value: 'notebook' }
  { name: 'SOCWIRE_TI_CONCURRENCY', value: '8' }
  { name: 'SOCWIRE_TI_TIMEOUT', value: '10s' }
  { name: 'SOCWIRE_TI_CACHE_TTL', value: '1h' }
  { name: 'SOCWIRE_TI_CACHE_ENTRIES', value: '10000' }
  { name: 'SOCWIRE_TI_VIRUSTOTAL_URL', value: '' }
  { name: 'SOCWIRE_TI_ABUSEIPDB_URL', value: '' }
  { name: 'SOCWIRE_TI_GREYNOISE_URL', value: '' }
  { name: 'SOCWIRE_TI_OTX_URL', value: '' }
  { name: 'SOCWIRE_TI_VIRUSTOTAL_TIER', value: 'premium' }
  { name: 'SOCWIRE_TI_VIRUSTOTAL_RATE', value: '' }
  { name: 'SOCWIRE_TI_ABUSEIPDB_RATE', value: '' }
  { name: 'SOCWIRE_TI_GREYNOISE_RATE', value: '' }
  { name: 'SOCWIRE_TI_OTX_RATE', value: '' }
  { name: 'SOCWIRE_TI_FAILURE_TTL', value: '1m' }
  { name: 'SOCWIRE_TI_TABLE', value: 'ThreatIntelIndicators' }
  { name: 'SOCWIRE_SWEEP_LOOKBACK', value: '24h' }
  { name: 'SOCWIRE_SWEEP_MAX', value: '1000' }
  // Key Vault references (versionless: a new secret version is picked up without a deploy).
  // A provider left out of tiProviders gets an empty value: the handler treats it as off.
  { name: 'SOCWIRE_TI_VIRUSTOTAL_KEY', value: contains(tiProviders, 'virustotal') ? '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/ti-virustotal-key/)' : '' }
  { name: 'SOCWIRE_TI_ABUSEIPDB_KEY', value: contains(tiProviders, 'abuseipdb') ? '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/ti-abuseipdb-key/)' : '' }
  { name: 'SOCWIRE_TI_GREYNOISE_KEY', value: contains(tiProviders, 'greynoise') ? '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/ti-greynoise-key/)' : '' }
  { name: 'SOCWIRE_TI_OTX_KEY', value: contains(tiProviders, 'otx') ? '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/ti-otx-key/)' : '' }
]

// Without an Azure ML workspace the GPU lifecycle's functions are switched off, so their
// triggers take no commands that nothing could run (the host skips a function whose
// AzureWebJobs.<name>.Disabled setting is true). deploy_consistency keeps this list equal to the
// functions that use the ML workspace.
var mlFunctions = [
  'cancel-job'
  'export-model'
  'ml-run-status'
  'ml-unrouted'
  'provision-gpu-cluster'
  'run-fine-tune'
  'training-telemetry'
]
var mlSwitchSettings = [for f in mlFunctions: { name: 'AzureWebJobs.${f}.Disabled', value: hasMl ? 'false' : 'true' }]

// Premium runs from the package blob with the identity (no Azure Files content share, so the
// storage account keeps shared keys off).
var premiumSettings = [
  { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
  { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'custom' }
  { name: 'WEBSITE_RUN_FROM_PACKAGE', value: '${storage.properties.primaryEndpoints.blob}app-package/${packageBlobName}' }
  { name: 'WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID', value: identity.id }
]

// One site for either plan: two resources with the same name under opposite conditions need a
// Bicep release from 2025 or later to compile (earlier ones refuse a duplicate name whatever
// the condition), and stage 2 finds the app by this name either way.
var isFlex = hostingPlan == 'FlexConsumption'

resource app 'Microsoft.Web/sites@2023-12-01' = {
  name: '${prefix}-${suffix}'
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: isFlex ? flexPlan.id : premiumPlan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    // Flex Consumption: deployment to the app-package container with the identity, and the
    // scale limit, which Flex applies to each per-function scale group (every function with
    // an event trigger scales on instances of its own; HTTP functions share one group).
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}app-package'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstances
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: { name: 'custom', version: '1.0' }
    } : null
    siteConfig: isFlex ? {
      minTlsVersion: '1.2'
      appSettings: concat(socwireSettings, mlSwitchSettings)
    } : {
      linuxFxVersion: ''
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      // The scale limit (see maximumInstances).
      functionAppScaleLimit: maximumInstances
      minimumElasticInstanceCount: 1
      appSettings: concat(premiumSettings, socwireSettings, mlSwitchSettings)
    }
  }
  dependsOn: [
    containers
  ]
}

// ---------------------------------------------------------------- roles of the app identity
// Each assignment says which call needs it. The table in docs/deploying.md is the same list;
// handlers/tests/deploy_consistency.rs checks every adapter's Azure call has its role here.

// Functions host: AzureWebJobsStorage (queue triggers and outputs, poison queues, timer and
// Event Hubs checkpoint leases, host keys) — and the handler's Blob ledger, reports and state
// (azure/blob.rs: get/put with If-Match / If-None-Match) and the package Premium runs from.
resource roleStorageBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner) }
}

// Queue trigger triage-requests, queue outputs triage-requests and socwire-rejects, the host's
// moves to <queue>-poison (and azure/queue.rs for `socwire send queue --storage`).
resource roleStorageQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor) }
}

// Functions host: diagnostic events it writes to Table storage through AzureWebJobsStorage.
resource roleStorageTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, identity.id, roles.storageTableDataContributor)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor) }
}

// azure/sentinel.rs: GET/PUT incidents, POST entities and alerts, PUT comments; incident-sweep
// lists incidents.
resource roleSentinel 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: workspace
  name: guid(workspace.id, identity.id, roles.sentinelResponder)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.sentinelResponder) }
}

// Log Analytics query API on SOCWIRE_LA_WORKSPACE_ID (incident context queries).
resource roleLogAnalytics 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: workspace
  name: guid(workspace.id, identity.id, roles.logAnalyticsReader)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.logAnalyticsReader) }
}

// azure/logs.rs: POST {dce}/dataCollectionRules/{dcr}/streams/Custom-AlertSubgraphs|Custom-AlertRejects.
resource roleLogsIngestion 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: dcr
  name: guid(dcr.id, identity.id, roles.monitoringMetricsPublisher)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher) }
}

// The Functions host sends telemetry to Application Insights with Entra ID (local auth off).
resource roleTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: appInsights
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher) }
}

// Event Grid output bindings (connection SOCWIRE_EVENTS_TOPIC) of triage-incident,
// alert-stream and the ML functions: publish socwire.* events.
resource roleEventsTopic 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: topics[1]
  name: guid(topics[1].id, identity.id, roles.eventGridDataSender)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender) }
}

// Event Hubs triggers (connection SOCWIRE_EVENTHUBS): alert-stream on alerts,
// training-telemetry on training-telemetry.
resource roleEventHubs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: eventHubs
  name: guid(eventHubs.id, identity.id, roles.eventHubsDataReceiver)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver) }
}

// Service Bus triggers (connection SOCWIRE_SERVICEBUS) on the ml-commands subscriptions.
resource roleServiceBusReceive 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (t, i) in serviceBusTopicNames: {
  scope: sbTopics[i]
  name: guid(sbTopics[i].id, identity.id, roles.serviceBusDataReceiver)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver) }
}]

// Service Bus output bindings to ml-commands and the handler's scheduled sends (Service Bus
// REST: POST /ml-commands/messages with ScheduledEnqueueTimeUtc).
resource roleServiceBusSend 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (t, i) in serviceBusTopicNames: {
  scope: sbTopics[i]
  name: guid(sbTopics[i].id, identity.id, roles.serviceBusDataSender)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender) }
}]

// Key Vault references of SOCWIRE_TI_*_KEY (resolved by the platform with keyVaultReferenceIdentity).
resource roleVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, identity.id, roles.keyVaultSecretsUser)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser) }
}

// Azure ML ARM: PUT jobs, POST jobs/{id}/cancel, PUT models/{name}/versions/{v} (run-fine-tune,
// export-model, cancel-job); run history and MLflow metric reads (a failed job's error, a
// container job's metrics).
resource roleMlDataScientist 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasMl) {
  scope: mlWorkspace
  name: guid(resourceGroup().id, azureMlWorkspaceName, identity.id, roles.azureMlDataScientist)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMlDataScientist) }
}

// Azure ML ARM: GET, PUT (new) and PATCH (scale settings) computes/{name} and its async-operation
// polling (provision-gpu-cluster; scale-back after a failed pipeline).
resource roleMlCompute 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasMl) {
  scope: mlWorkspace
  name: guid(resourceGroup().id, azureMlWorkspaceName, identity.id, roles.azureMlComputeOperator)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMlComputeOperator) }
}

// provision-gpu-cluster gives new clusters the jobs' identity: assigning a user-assigned
// identity to a resource needs Managed Identity Operator on it.
resource roleMlJobIdentityOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasMl) {
  scope: mlJobIdentity
  name: guid(resourceGroup().id, '${prefix}-ml-jobs', identity.id, roles.managedIdentityOperator)
  properties: { principalId: identity.properties.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.managedIdentityOperator) }
}

// Fine-tune jobs send telemetry to training-telemetry (Event Hubs REST, socwire ml fine-tune).
resource roleMlJobsTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasMl) {
  scope: hubs[indexOf(eventHubNames, 'training-telemetry')]
  name: guid(resourceGroup().id, '${prefix}-ml-jobs', 'training-telemetry', roles.eventHubsDataSender)
  properties: { principalId: hasMl ? mlJobIdentity.properties.principalId : '', principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender) }
}

// ---------------------------------------------------------------- roles of the topics' identities

// Event Grid dead-lettering with the topic's own identity (stage 2 subscriptions).
resource roleTopicDeadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (t, i) in eventGridTopicNames: {
  scope: storage
  name: guid(storage.id, topics[i].id, roles.storageBlobDataContributor)
  properties: { principalId: topics[i].identity.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor) }
}]

// Event Grid dead-lettering of the ml-run-status subscription with the system topic's identity.
resource roleMlTopicDeadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasMl) {
  scope: storage
  name: guid(storage.id, '${prefix}-azureml-events', roles.storageBlobDataContributor)
  properties: { principalId: hasMl ? mlSystemTopic.identity.principalId : '', principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor) }
}

output functionAppName string = app.name
output identityPrincipalId string = identity.properties.principalId
output storageAccountName string = storage.name
output packageContainerUrl string = '${storage.properties.primaryEndpoints.blob}app-package'
output incidentsTopicName string = topics[0].name
output incidentsTopicEndpoint string = topics[0].properties.endpoint
output eventsTopicName string = topics[1].name
output keyVaultName string = vault.name
output serviceBusNamespace string = serviceBus.name
output eventHubsNamespace string = eventHubs.name
output logsIngestionEndpoint string = dce.properties.logsIngestion.endpoint
output dcrImmutableId string = dcr.properties.immutableId
