"""Every SQL string of the voucher service, by capability (issuance, …); the modules beside the package
decide and publish, these read and write."""
