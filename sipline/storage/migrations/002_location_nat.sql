-- Registrar bindings remember whether the phone is behind NAT (its Contact or
-- top Via named another address than the one the REGISTER came from), so the
-- proxy keeps pinging it after a restart (proxy/nat.py).
ALTER TABLE locations ADD COLUMN nat SMALLINT NOT NULL DEFAULT 0;
