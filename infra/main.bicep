// socwire: the Azure resources the function set needs, with managed-identity role assignments.
// Deploy: az deployment group create -g <rg> -f infra/main.bicep -p sentinelWorkspaceName=<ws>
// Not validated in CI (no Bicep CLI there); `az bicep build -f infra/main.bicep` checks it.

@description('Name prefix for every resource.')
param prefix string = 'socwire'

@description('Region.')
param location string = resourceGroup().location

@description('Log Analytics workspace that has Microsoft Sentinel enabled (same resource group).')
param sentinelWorkspaceName string

var storageName = toLower(replace('${prefix}${uniqueString(resourceGroup().id)}', '-', ''))
var eventGridSubscriptions = loadJsonContent('eventgrid-subscriptions.json')

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: sentinelWorkspaceName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: take(storageName, 24)
  location: location
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for c in ['socwire-ledger', 'socwire-reports', 'eventgrid-deadletters', 'alert-deadletters', 'socwire-state']: {
  parent: blobService
  name: c
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource triageQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'triage-requests'
}

resource incidentsTopic 'Microsoft.EventGrid/topics@2023-12-15-preview' = {
  name: '${prefix}-sentinel-incidents'
  location: location
  identity: { type: 'SystemAssigned' }
  properties: { inputSchema: 'EventGridSchema', disableLocalAuth: true }
}

resource eventsTopic 'Microsoft.EventGrid/topics@2023-12-15-preview' = {
  name: '${prefix}-events'
  location: location
  properties: { inputSchema: 'EventGridSchema' }
}

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: '${prefix}-plan'
  location: location
  sku: { name: 'EP1', tier: 'ElasticPremium' }
  kind: 'elastic'
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2023-12-01' = {
  name: '${prefix}-${uniqueString(resourceGroup().id)}'
  location: location
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      linuxFxVersion: ''
      minTlsVersion: '1.2'
      appSettings: [
        { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
        { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'custom' }
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'SOCWIRE_STORAGE', value: storage.properties.primaryEndpoints.blob }
        { name: 'SOCWIRE_SENTINEL_ENDPOINT', value: environment().resourceManager }
        { name: 'SOCWIRE_EVENTS_TOPIC_URI', value: eventsTopic.properties.endpoint }
        { name: 'SOCWIRE_REQUIRE_AZURE', value: 'true' }
        { name: 'SOCWIRE_SWEEP_SCHEDULE', value: '0 */10 * * * *' }
        { name: 'SOCWIRE_REPORT_LINK_TTL', value: '72h' }
      ]
    }
  }
}

// Role definition ids (built-in).
var roles = {
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  sentinelResponder: '3e150937-b8fe-4cfb-8069-0eaf05ecd056'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
}

resource blobRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, app.id, roles.storageBlobDataContributor)
  properties: { principalId: app.identity.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor) }
}

resource queueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, app.id, roles.storageQueueDataContributor)
  properties: { principalId: app.identity.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor) }
}

resource sentinelRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: workspace
  name: guid(workspace.id, app.id, roles.sentinelResponder)
  properties: { principalId: app.identity.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.sentinelResponder) }
}

resource eventsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: eventsTopic
  name: guid(eventsTopic.id, app.id, roles.eventGridDataSender)
  properties: { principalId: app.identity.principalId, principalType: 'ServicePrincipal', roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender) }
}

// The same subscriptions `socwire up` reads, delivered to the Functions Event Grid trigger with
// retry and a blob dead-letter destination.
resource subscriptions 'Microsoft.EventGrid/topics/eventSubscriptions@2023-12-15-preview' = [for s in eventGridSubscriptions: {
  parent: incidentsTopic
  name: s.function
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: { resourceId: '${app.id}/functions/${s.function}' }
    }
    retryPolicy: { maxDeliveryAttempts: s.maxDeliveryAttempts, eventTimeToLiveInMinutes: s.eventTimeToLiveMinutes }
    deadLetterDestination: {
      endpointType: 'StorageBlob'
      properties: { resourceId: storage.id, blobContainerName: 'eventgrid-deadletters' }
    }
  }
}]

output functionAppName string = app.name
output incidentsTopicEndpoint string = incidentsTopic.properties.endpoint
