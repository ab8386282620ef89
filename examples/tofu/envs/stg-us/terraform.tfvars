name     = "stg-us"
replicas = 2
