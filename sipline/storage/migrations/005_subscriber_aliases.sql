-- Identities a subscriber may put in its From besides its own (proxy/identity.py):
-- space-separated user parts in its domain, user@domain, or telephone numbers.
-- The proxy refuses any other From from it (issue 10: identity follows authentication).
ALTER TABLE subscribers ADD COLUMN aliases VARCHAR(1024) NOT NULL DEFAULT '';
