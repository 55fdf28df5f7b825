// tfregistry on Azure Container Apps: environment, web app, worker app, scheduler app, a manual
// migration job, a user-assigned managed identity with access to a Blob container, PostgreSQL Flexible
// Server and Azure Cache for Redis.  See README.md for the `az` commands.
// Not validated by the test suite: neither the az CLI's Bicep compiler nor a Bicep binary can be
// installed on the project's machines (no registry ships it there).

@description('Name prefix of every resource (lowercase letters and digits).')
param name string = 'tfregistry'
param location string = resourceGroup().location
@description('Container image, e.g. myregistry.azurecr.io/tfregistry:0.1.0')
param image string
@description('https:// address Terraform clients use (the web app\'s custom domain).')
param publicUrl string
@secure()
@description('secret_key of the registry: a long random string.')
param secretKey string
@description('PostgreSQL administrator login.')
param postgresAdmin string = 'tfregistry'
@secure()
param postgresPassword string
param webMinReplicas int = 2
param webMaxReplicas int = 10
param workerReplicas int = 1

var suffix = uniqueString(resourceGroup().id)
var blobContainer = 'registry'
// Storage Blob Data Contributor (includes generateUserDelegationKey, needed for signed download URLs).
var blobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: '${name}-logs'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource env 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${name}-env'
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${name}-identity'
  location: location
}

resource storage 'Microsoft.Storage/storageAccounts@2023-01-01' = {
  name: take('${name}${suffix}', 24)
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_ZRS' }
  properties: {
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-01-01' = {
  parent: storage
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-01-01' = {
  parent: blobService
  name: blobContainer
}

resource blobAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, identity.id, blobDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@2022-12-01' = {
  name: '${name}-pg-${suffix}'
  location: location
  sku: { name: 'Standard_B2s', tier: 'Burstable' }
  properties: {
    version: '16'
    administratorLogin: postgresAdmin
    administratorLoginPassword: postgresPassword
    storage: { storageSizeGB: 32 }
    backup: { backupRetentionDays: 7, geoRedundantBackup: 'Disabled' }
    highAvailability: { mode: 'Disabled' }
  }
}

resource postgresDb 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2022-12-01' = {
  parent: postgres
  name: 'tfregistry'
}

// Container Apps reach the server over its public endpoint; restrict this further with VNet integration.
resource postgresAzure 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2022-12-01' = {
  parent: postgres
  name: 'AllowAzureServices'
  properties: { startIpAddress: '0.0.0.0', endIpAddress: '0.0.0.0' }
}

resource redis 'Microsoft.Cache/redis@2023-08-01' = {
  name: '${name}-redis-${suffix}'
  location: location
  properties: {
    sku: { name: 'Basic', family: 'C', capacity: 1 }
    enableNonSslPort: false
    minimumTlsVersion: '1.2'
  }
}

var databaseUrl = 'postgresql+psycopg://${postgresAdmin}:${postgresPassword}@${postgres.properties.fullyQualifiedDomainName}:5432/tfregistry?sslmode=require'
var redisUrl = 'rediss://:${redis.listKeys().primaryKey}@${redis.properties.hostName}:6380/0'

var secrets = [
  { name: 'secret-key', value: secretKey }
  { name: 'database-url', value: databaseUrl }
  { name: 'redis-url', value: redisUrl }
]

var environment = [
  { name: 'TFR_PUBLIC_URL', value: publicUrl }
  { name: 'TFR_SECRET_KEY', secretRef: 'secret-key' }
  { name: 'TFR_DATABASE_URL', secretRef: 'database-url' }
  { name: 'TFR_REDIS_URL', secretRef: 'redis-url' }
  { name: 'TFR_JOBS__SCHEDULER_IN_PROCESS', value: 'false' }
  { name: 'TFR_STORAGE__BACKEND', value: 'azure' }
  { name: 'TFR_STORAGE__AZURE__AUTH', value: 'identity' }
  { name: 'TFR_STORAGE__AZURE__ACCOUNT_URL', value: storage.properties.primaryEndpoints.blob }
  { name: 'TFR_STORAGE__AZURE__CONTAINER', value: blobContainer }
  { name: 'TFR_STORAGE__AZURE__MANAGED_IDENTITY_CLIENT_ID', value: identity.properties.clientId }
  // Container Apps' ingress terminates TLS and sets X-Forwarded-*; the app sees it from the environment's network.
  { name: 'TFR_PROXY__TRUSTED', value: '10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16' }
]

var identityBlock = {
  type: 'UserAssigned'
  userAssignedIdentities: { '${identity.id}': {} }
}

resource web 'Microsoft.App/containerApps@2024-03-01' = {
  name: '${name}-web'
  location: location
  identity: identityBlock
  properties: {
    managedEnvironmentId: env.id
    configuration: {
      secrets: secrets
      ingress: {
        external: true
        targetPort: 8080
        transport: 'auto'
        allowInsecure: false
      }
    }
    template: {
      containers: [
        {
          name: 'web'
          image: image
          args: [ 'web' ]
          env: environment
          resources: { cpu: json('1.0'), memory: '2Gi' }
          probes: [
            { type: 'Liveness', httpGet: { path: '/health', port: 8080 }, periodSeconds: 10 }
            { type: 'Readiness', httpGet: { path: '/ready', port: 8080 }, periodSeconds: 5 }
            { type: 'Startup', httpGet: { path: '/health', port: 8080 }, periodSeconds: 2, failureThreshold: 30 }
          ]
        }
      ]
      scale: {
        minReplicas: webMinReplicas
        maxReplicas: webMaxReplicas
        rules: [ { name: 'http', http: { metadata: { concurrentRequests: '50' } } } ]
      }
    }
  }
  dependsOn: [ blobAccess, postgresDb, container ]
}

resource worker 'Microsoft.App/containerApps@2024-03-01' = {
  name: '${name}-worker'
  location: location
  identity: identityBlock
  properties: {
    managedEnvironmentId: env.id
    configuration: { secrets: secrets }
    template: {
      containers: [
        { name: 'worker', image: image, args: [ 'worker' ], env: environment, resources: { cpu: json('0.5'), memory: '1Gi' } }
      ]
      scale: { minReplicas: workerReplicas, maxReplicas: workerReplicas }
    }
  }
  dependsOn: [ blobAccess, postgresDb, container ]
}

resource scheduler 'Microsoft.App/containerApps@2024-03-01' = {
  name: '${name}-scheduler'
  location: location
  identity: identityBlock
  properties: {
    managedEnvironmentId: env.id
    configuration: { secrets: secrets }
    template: {
      containers: [
        { name: 'scheduler', image: image, args: [ 'scheduler' ], env: environment, resources: { cpu: json('0.25'), memory: '0.5Gi' } }
      ]
      scale: { minReplicas: 1, maxReplicas: 1 }
    }
  }
  dependsOn: [ blobAccess, postgresDb, container ]
}

// `tfr db upgrade`: start it (README) before rolling out a new image.
resource migrate 'Microsoft.App/jobs@2024-03-01' = {
  name: '${name}-migrate'
  location: location
  identity: identityBlock
  properties: {
    environmentId: env.id
    configuration: {
      triggerType: 'Manual'
      replicaTimeout: 1800
      replicaRetryLimit: 1
      manualTriggerConfig: { parallelism: 1, replicaCompletionCount: 1 }
      secrets: secrets
    }
    template: {
      containers: [
        { name: 'migrate', image: image, args: [ 'db', 'upgrade' ], env: environment, resources: { cpu: json('0.5'), memory: '1Gi' } }
      ]
    }
  }
  dependsOn: [ postgresDb ]
}

output webFqdn string = web.properties.configuration.ingress.fqdn
output identityClientId string = identity.properties.clientId
output storageAccount string = storage.name
