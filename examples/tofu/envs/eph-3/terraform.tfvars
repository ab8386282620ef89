name     = "eph-3"
replicas = 1
