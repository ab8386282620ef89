name     = "eph-4"
replicas = 1
