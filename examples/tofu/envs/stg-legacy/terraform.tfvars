name     = "stg-legacy"
replicas = 2
engine   = "pg14" # created before pg15; app 2.0.0 migrates it
