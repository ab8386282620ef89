# One environment: the app module at the version sluice rolls out (a const variable may choose
# a module source), with this environment's settings from terraform.tfvars.
variable "app_version" {
  type  = string
  const = true
}

variable "name" {
  type = string
}

variable "engine" {
  type    = string
  default = "pg15"
}

variable "replicas" {
  type    = number
  default = 1
}

module "app" {
  source   = "../../modules/app/${var.app_version}"
  name     = var.name
  engine   = var.engine
  replicas = var.replicas
}

output "app_version" {
  value = module.app.version
}
