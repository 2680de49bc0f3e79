// socwire, stage 2 of 2: Event Grid subscriptions to the functions. Deploy after the package is
// published and the app has indexed its functions (`az functionapp function list` shows them):
// ARM validates an AzureFunction destination against the function, and fails the deployment
// while the function does not exist yet.
//
//   az deployment group create -g <rg> -f infra/subscriptions.bicep -p infra/subscriptions.bicepparam

targetScope = 'resourceGroup'

@description('The prefix stage 1 was deployed with.')
@minLength(3)
@maxLength(12)
param prefix string = 'socwire'

@description('Subscribe ml-run-status to the Azure ML system topic (stage 1 created it when azureMlWorkspaceName was set, and the ml-run-status function must be published).')
param subscribeMlRunStatus bool = false

var suffix = uniqueString(resourceGroup().id, prefix)
var storageName = take(toLower(replace('${prefix}${suffix}', '-', '')), 24)
var eventGridSubscriptions = loadJsonContent('eventgrid-subscriptions.json')
// The custom topics stage 1 creates (main.bicep's eventGridTopicNames). The other entries of
// eventgrid-subscriptions.json name system topics: azureml-events is Azure ML's, subscribed
// below as mlRunStatus, never a custom topic of ours.
var customTopicNames = [
  'sentinel-incidents'
  'socwire-events'
]
var mlRunStatusSubscription = first(filter(eventGridSubscriptions, s => s.topic == 'azureml-events'))

resource app 'Microsoft.Web/sites@2023-12-01' existing = {
  name: '${prefix}-${suffix}'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageName
}

// The same subscriptions `socwire up` reads (infra/eventgrid-subscriptions.json): retry on Event
// Grid's schedule, then a dead letter in the eventgrid-deadletters container, written with the
// topic's own identity (stage 1 gave it Storage Blob Data Contributor).
resource subscriptions 'Microsoft.EventGrid/topics/eventSubscriptions@2024-06-01-preview' = [for s in filter(eventGridSubscriptions, s => contains(customTopicNames, s.topic)): {
  name: '${prefix}-${s.topic}-${suffix}/${s.function}'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${app.id}/functions/${s.function}'
        maxEventsPerBatch: 1
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: s.maxDeliveryAttempts
      eventTimeToLiveInMinutes: s.eventTimeToLiveMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: 'eventgrid-deadletters'
        }
      }
    }
  }
}]

resource mlRunStatus 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2024-06-01-preview' = if (subscribeMlRunStatus) {
  name: '${prefix}-azureml-events/ml-run-status'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${app.id}/functions/ml-run-status'
        maxEventsPerBatch: 1
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.MachineLearningServices.RunStatusChanged'
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: mlRunStatusSubscription.maxDeliveryAttempts
      eventTimeToLiveInMinutes: mlRunStatusSubscription.eventTimeToLiveMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: 'eventgrid-deadletters'
        }
      }
    }
  }
}
