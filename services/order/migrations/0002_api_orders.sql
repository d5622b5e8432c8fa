-- Orders placed through the HTTP API share the external_ref namespace (and its uniqueness) with IPA records.
ALTER TABLE ipa_records DROP CONSTRAINT ipa_records_source_check;
ALTER TABLE ipa_records ADD CONSTRAINT ipa_records_source_check CHECK (source IN ('topic', 'csv', 'json', 'api'));
