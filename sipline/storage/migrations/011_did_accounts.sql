-- The account a DID belongs to (issue 15: a customer sees its own DIDs, never
-- another account's); '' for a number no account owns (operators' only).
ALTER TABLE dids ADD COLUMN account VARCHAR(64) NOT NULL DEFAULT '';
