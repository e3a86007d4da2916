-- CDR search by account and time (the portal's CDR page and export, billing
-- per account): one account's day is a range scan of this index, not a scan
-- of every CDR of the day.
CREATE INDEX cdrs_account_started_at ON cdrs (account, started_at);
