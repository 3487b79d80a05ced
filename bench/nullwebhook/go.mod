module immutable-os-webhook.local/nullwebhook

go 1.22
