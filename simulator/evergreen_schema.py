"""The tables of an Evergreen database that circulation touches, written by us from Evergreen's
own SQL (evergreen-library-system/Evergreen, Open-ILS/src/sql/Pg, read at 921164c), never kinder
than it:

- 002.schema.config.sql / 950.data.seed-values.sql: config.copy_status and its seeded ids
  (0 Available, 1 Checked out, 6 In transit, 7 Reshelving, ...), config.standing,
  config.identification_type, config.net_access_level; the org unit types (1 Consortium,
  2 System, 3 Branch), the root org unit 1 'CONS', the permission groups (1 Users, 2 Patrons,
  3 Staff and staff groups below it) and the built-in administrator, actor.usr id 1 (profile 1,
  super_user, a card with a random barcode, ident_value 'identification', home_ou 1).
- 005.schema.actors.sql: actor.org_unit_type, actor.org_unit, actor.usr (NOT NULLs, defaults,
  UNIQUE card and usrname, `au_update_trig` keeping last_update_time, DELETE turned into
  `deleted = TRUE` by evergreen.setup_delete_protect_rule), actor.card (barcode UNIQUE),
  actor.workstation. 999.functions.global.sql: actor.usr_delete keeps the row, deleted = TRUE,
  card NULL, ident_value NULL, profile the root group.
- 040.schema.asset.sql: asset.call_number (label once per lib among non-deleted, delete
  protect rule), asset.copy (circ_lib NOT NULL, status FK with default 0, barcode unique only
  among non-deleted copies: index copy_barcode_key, delete protect rule, `floating`, the status
  trigger acp_status_changed that moves status_changed_time on every status change except 7 ->
  0, acp_created that sets it on insert), asset.copy_location, call number class/prefix/suffix.
- 080.schema.money.sql / 090.schema.action.sql: action.circulation INHERITS
  money.billable_xact (id, usr, xact_start, xact_finish), circ_staff NOT NULL, the duration
  and fine rule names NOT NULL, stop_fines CHECK list, parent_circ, the partial unique index
  only_one_concurrent_checkout_per_copy, target_copy checked by trigger (evergreen.fake_fkey_tgr,
  there is no FK); action.transit_copy.
- 800.fkeys.sql: the foreign keys, DEFERRABLE INITIALLY DEFERRED as Evergreen declares them (a
  violation surfaces at commit), with their ON DELETE actions.
- 120.floating_groups.sql: config.floating_group, config.floating_group_member.

Columns no circulation path reads (addresses, MARC, stat cats, billing) are left out, and
biblio.record_entry is reduced to the precat record -1 the call numbers point to.

One simulation device: every `now()` of this schema (defaults, triggers) reads
circhub_sim.now(), the simulated world's clock when a desk has set it, else the server's. A
desk action at a simulated time stamps rows as Evergreen would have stamped them then.
"""

from __future__ import annotations

SCHEMAS = ("evergreen", "config", "permission", "actor", "biblio", "asset", "money", "action",
           "circhub_sim")

CONFIG_SQL = """
CREATE TABLE config.copy_status (
    id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    holdable BOOL NOT NULL DEFAULT FALSE, opac_visible BOOL NOT NULL DEFAULT FALSE,
    copy_active BOOL NOT NULL DEFAULT FALSE, restrict_copy_delete BOOL NOT NULL DEFAULT FALSE,
    is_available BOOL NOT NULL DEFAULT FALSE, hopeless_prone BOOL NOT NULL DEFAULT FALSE);
INSERT INTO config.copy_status (id, name, copy_active, is_available) VALUES
    (0, 'Available', TRUE, TRUE), (1, 'Checked out', TRUE, FALSE), (2, 'Bindery', FALSE, FALSE),
    (3, 'Lost', FALSE, FALSE), (4, 'Missing', FALSE, FALSE), (5, 'In process', FALSE, FALSE),
    (6, 'In transit', FALSE, FALSE), (7, 'Reshelving', TRUE, TRUE),
    (8, 'On holds shelf', TRUE, FALSE), (9, 'On order', FALSE, FALSE), (10, 'ILL', TRUE, FALSE),
    (11, 'Cataloging', FALSE, FALSE), (12, 'Reserves', TRUE, FALSE),
    (13, 'Discard/Weed', FALSE, FALSE), (14, 'Damaged', FALSE, FALSE),
    (15, 'On reservation shelf', TRUE, FALSE), (16, 'Long Overdue', FALSE, FALSE),
    (17, 'Lost and Paid', FALSE, FALSE), (18, 'Canceled Transit', FALSE, FALSE);
CREATE TABLE config.standing (id SERIAL PRIMARY KEY, value TEXT NOT NULL UNIQUE);
INSERT INTO config.standing (id, value) VALUES (1, 'Good'), (2, 'Barred');
CREATE TABLE config.identification_type (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE);
INSERT INTO config.identification_type (id, name) VALUES
    (1, 'Drivers License'), (2, 'SSN'), (3, 'Other');
CREATE TABLE config.net_access_level (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE);
INSERT INTO config.net_access_level (id, name) VALUES (1, 'Filtered'), (2, 'Unfiltered');
CREATE TABLE permission.grp_tree (
    id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    parent INT REFERENCES permission.grp_tree (id) ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED,
    usergroup BOOL NOT NULL DEFAULT TRUE, perm_interval INTERVAL NOT NULL DEFAULT '3 years',
    description TEXT, application_perm TEXT);
INSERT INTO permission.grp_tree (id, name, parent, usergroup, application_perm) VALUES
    (1, 'Users', NULL, FALSE, 'group_application.user'),
    (2, 'Patrons', 1, TRUE, 'group_application.user.patron'),
    (3, 'Staff', 1, FALSE, 'group_application.user.staff'),
    (5, 'Circulators', 3, TRUE, 'group_application.user.staff.circ'),
    (10, 'Local Administrator', 3, TRUE, 'group_application.user.staff.admin.local_admin'),
    (13, 'Global Administrator', 3, TRUE, 'group_application.user.staff.admin.global_admin');
SELECT setval('permission.grp_tree_id_seq', 100);
"""

ACTOR_SQL = """
CREATE TABLE actor.org_unit_type (
    id SERIAL PRIMARY KEY, name TEXT NOT NULL, opac_label TEXT NOT NULL, depth INT NOT NULL,
    parent INT REFERENCES actor.org_unit_type (id) DEFERRABLE INITIALLY DEFERRED,
    can_have_vols BOOL NOT NULL DEFAULT TRUE, can_have_users BOOL NOT NULL DEFAULT TRUE);
INSERT INTO actor.org_unit_type (id, name, opac_label, depth, parent, can_have_users,
                                 can_have_vols) VALUES
    (1, 'Consortium', 'Everywhere', 0, NULL, FALSE, FALSE),
    (2, 'System', 'Local Library System', 1, 1, FALSE, FALSE),
    (3, 'Branch', 'This Branch', 2, 2, TRUE, TRUE);
SELECT setval('actor.org_unit_type_id_seq', 100);
CREATE TABLE actor.org_unit (
    id SERIAL PRIMARY KEY,
    parent_ou INT REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED,
    ou_type INT NOT NULL REFERENCES actor.org_unit_type (id) DEFERRABLE INITIALLY DEFERRED,
    shortname TEXT NOT NULL UNIQUE, name TEXT NOT NULL UNIQUE, email TEXT, phone TEXT,
    opac_visible BOOL NOT NULL DEFAULT TRUE, staff_catalog_visible BOOL NOT NULL DEFAULT TRUE,
    fiscal_calendar INT NOT NULL DEFAULT 1);
INSERT INTO actor.org_unit (id, parent_ou, ou_type, shortname, name)
    VALUES (1, NULL, 1, 'CONS', 'Example Consortium');
SELECT setval('actor.org_unit_id_seq', 100);
CREATE TABLE actor.workstation (
    id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    owning_lib INT NOT NULL REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE actor.usr (
    id SERIAL PRIMARY KEY, card INT UNIQUE, profile INT NOT NULL, usrname TEXT NOT NULL UNIQUE,
    email TEXT, passwd TEXT,
    standing INT NOT NULL DEFAULT 1 REFERENCES config.standing (id) DEFERRABLE INITIALLY DEFERRED,
    ident_type INT NOT NULL
        REFERENCES config.identification_type (id) DEFERRABLE INITIALLY DEFERRED,
    ident_value TEXT,
    ident_type2 INT REFERENCES config.identification_type (id) DEFERRABLE INITIALLY DEFERRED,
    ident_value2 TEXT,
    net_access_level INT NOT NULL DEFAULT 1
        REFERENCES config.net_access_level (id) DEFERRABLE INITIALLY DEFERRED,
    prefix TEXT, first_given_name TEXT NOT NULL, second_given_name TEXT,
    family_name TEXT NOT NULL, suffix TEXT, day_phone TEXT,
    home_ou INT NOT NULL, dob DATE,
    active BOOL NOT NULL DEFAULT TRUE, master_account BOOL NOT NULL DEFAULT FALSE,
    super_user BOOL NOT NULL DEFAULT FALSE, barred BOOL NOT NULL DEFAULT FALSE,
    deleted BOOL NOT NULL DEFAULT FALSE, juvenile BOOL NOT NULL DEFAULT FALSE,
    usrgroup SERIAL NOT NULL, claims_returned_count INT NOT NULL DEFAULT 0,
    credit_forward_balance NUMERIC(6,2) NOT NULL DEFAULT 0.00,
    last_xact_id TEXT NOT NULL DEFAULT 'none',
    create_date TIMESTAMPTZ NOT NULL DEFAULT now(),
    expire_date TIMESTAMPTZ NOT NULL DEFAULT (now() + '3 years'::INTERVAL),
    claims_never_checked_out_count INT NOT NULL DEFAULT 0,
    last_update_time TIMESTAMPTZ);
ALTER TABLE actor.usr ADD CONSTRAINT actor_usr_home_ou_fkey FOREIGN KEY (home_ou)
    REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE actor.usr ADD CONSTRAINT actor_usr_profile_fkey FOREIGN KEY (profile)
    REFERENCES permission.grp_tree (id) DEFERRABLE INITIALLY DEFERRED;
CREATE FUNCTION actor.au_updated() RETURNS TRIGGER AS $$
BEGIN
    NEW.last_update_time := now();
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER au_update_trig BEFORE INSERT OR UPDATE ON actor.usr
    FOR EACH ROW EXECUTE PROCEDURE actor.au_updated();
CREATE RULE protect_actor_usr_delete AS ON DELETE TO actor.usr
    DO INSTEAD (UPDATE actor.usr SET deleted = TRUE WHERE OLD.id = actor.usr.id);
CREATE TABLE actor.card (
    id SERIAL PRIMARY KEY,
    usr INT NOT NULL REFERENCES actor.usr (id) DEFERRABLE INITIALLY DEFERRED,
    barcode TEXT NOT NULL UNIQUE, active BOOL NOT NULL DEFAULT TRUE);
INSERT INTO actor.usr (profile, card, usrname, passwd, first_given_name, family_name, dob,
                       master_account, super_user, ident_type, ident_value, home_ou)
    VALUES (1, 1, md5(random()::text), md5(random()::text), 'Administrator',
            'System Account', '1979-01-22', TRUE, TRUE, 1, 'identification', 1);
INSERT INTO actor.card (usr, barcode) VALUES (1, md5(random()::text));
UPDATE actor.usr SET card = (SELECT currval('actor.card_id_seq')) WHERE id = 1;
"""

ASSET_SQL = """
CREATE TABLE biblio.record_entry (
    id BIGSERIAL PRIMARY KEY, creator INT NOT NULL DEFAULT 1, editor INT NOT NULL DEFAULT 1,
    create_date TIMESTAMPTZ NOT NULL DEFAULT now(), edit_date TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted BOOL NOT NULL DEFAULT FALSE, marc TEXT NOT NULL);
INSERT INTO biblio.record_entry (id, marc) VALUES (-1, '<record/>');
CREATE TABLE asset.copy_location (
    id SERIAL PRIMARY KEY, name TEXT NOT NULL,
    owning_lib INT NOT NULL REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED,
    holdable BOOL NOT NULL DEFAULT TRUE, opac_visible BOOL NOT NULL DEFAULT TRUE,
    circulate BOOL NOT NULL DEFAULT TRUE, deleted BOOL NOT NULL DEFAULT FALSE);
INSERT INTO asset.copy_location (id, name, owning_lib) VALUES (1, 'Stacks', 1);
CREATE TABLE asset.call_number_class (
    id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL,
    normalizer TEXT NOT NULL DEFAULT 'asset.normalize_generic');
INSERT INTO asset.call_number_class (id, name) VALUES (1, 'Generic');
CREATE TABLE asset.call_number_prefix (
    id SERIAL PRIMARY KEY,
    owning_lib INT NOT NULL REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED,
    label TEXT NOT NULL);
CREATE TABLE asset.call_number_suffix (LIKE asset.call_number_prefix INCLUDING ALL);
INSERT INTO asset.call_number_prefix (id, owning_lib, label) VALUES (-1, 1, '');
INSERT INTO asset.call_number_suffix (id, owning_lib, label) VALUES (-1, 1, '');
CREATE TABLE asset.call_number (
    id BIGSERIAL PRIMARY KEY, creator BIGINT NOT NULL,
    create_date TIMESTAMPTZ DEFAULT now(), editor BIGINT NOT NULL,
    edit_date TIMESTAMPTZ DEFAULT now(), record BIGINT NOT NULL, owning_lib INT NOT NULL,
    label TEXT NOT NULL, deleted BOOL NOT NULL DEFAULT FALSE,
    prefix INT NOT NULL DEFAULT -1
        REFERENCES asset.call_number_prefix (id) DEFERRABLE INITIALLY DEFERRED,
    suffix INT NOT NULL DEFAULT -1
        REFERENCES asset.call_number_suffix (id) DEFERRABLE INITIALLY DEFERRED,
    label_class BIGINT NOT NULL DEFAULT 1
        REFERENCES asset.call_number_class (id) DEFERRABLE INITIALLY DEFERRED,
    label_sortkey TEXT);
CREATE UNIQUE INDEX asset_call_number_label_once_per_lib
    ON asset.call_number (record, owning_lib, label, prefix, suffix)
    WHERE deleted = FALSE OR deleted IS FALSE;
ALTER TABLE asset.call_number ADD CONSTRAINT asset_call_number_owning_lib_fkey
    FOREIGN KEY (owning_lib) REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE asset.call_number ADD CONSTRAINT asset_call_number_record_fkey
    FOREIGN KEY (record) REFERENCES biblio.record_entry (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE asset.call_number ADD CONSTRAINT asset_call_number_creator_fkey
    FOREIGN KEY (creator) REFERENCES actor.usr (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE asset.call_number ADD CONSTRAINT asset_call_number_editor_fkey
    FOREIGN KEY (editor) REFERENCES actor.usr (id) DEFERRABLE INITIALLY DEFERRED;
CREATE RULE protect_asset_call_number_delete AS ON DELETE TO asset.call_number
    DO INSTEAD (UPDATE asset.call_number SET deleted = TRUE
                WHERE OLD.id = asset.call_number.id);
CREATE TABLE config.floating_group (
    id SERIAL PRIMARY KEY, name TEXT UNIQUE NOT NULL, manual BOOL NOT NULL DEFAULT FALSE);
CREATE TABLE config.floating_group_member (
    id SERIAL PRIMARY KEY,
    floating_group INT NOT NULL REFERENCES config.floating_group (id),
    org_unit INT NOT NULL REFERENCES actor.org_unit (id),
    stop_depth INT NOT NULL DEFAULT 0, max_depth INT, exclude BOOL NOT NULL DEFAULT FALSE);
CREATE TABLE asset.copy (
    id BIGSERIAL PRIMARY KEY,
    circ_lib INT NOT NULL REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED,
    creator BIGINT NOT NULL, call_number BIGINT NOT NULL, editor BIGINT NOT NULL,
    create_date TIMESTAMPTZ DEFAULT now(), edit_date TIMESTAMPTZ DEFAULT now(),
    copy_number INT,
    status INT NOT NULL DEFAULT 0
        REFERENCES config.copy_status (id) DEFERRABLE INITIALLY DEFERRED,
    location INT NOT NULL DEFAULT 1
        REFERENCES asset.copy_location (id) DEFERRABLE INITIALLY DEFERRED,
    loan_duration INT NOT NULL CHECK (loan_duration IN (1, 2, 3)),
    fine_level INT NOT NULL CHECK (fine_level IN (1, 2, 3)),
    age_protect INT, circulate BOOL NOT NULL DEFAULT TRUE, deposit BOOL NOT NULL DEFAULT FALSE,
    ref BOOL NOT NULL DEFAULT FALSE, holdable BOOL NOT NULL DEFAULT TRUE,
    deposit_amount NUMERIC(6,2) NOT NULL DEFAULT 0.00, price NUMERIC(8,2),
    barcode TEXT NOT NULL, circ_modifier TEXT, circ_as_type TEXT, dummy_title TEXT,
    dummy_author TEXT, alert_message TEXT, opac_visible BOOL NOT NULL DEFAULT TRUE,
    deleted BOOL NOT NULL DEFAULT FALSE, floating INT, dummy_isbn TEXT,
    status_changed_time TIMESTAMPTZ, active_date TIMESTAMPTZ,
    mint_condition BOOL NOT NULL DEFAULT TRUE, cost NUMERIC(8,2));
CREATE UNIQUE INDEX copy_barcode_key ON asset.copy (barcode)
    WHERE deleted = FALSE OR deleted IS FALSE;
CREATE INDEX cp_cn_idx ON asset.copy (call_number);
ALTER TABLE asset.copy ADD CONSTRAINT asset_copy_call_number_fkey FOREIGN KEY (call_number)
    REFERENCES asset.call_number (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE asset.copy ADD CONSTRAINT asset_copy_creator_fkey FOREIGN KEY (creator)
    REFERENCES actor.usr (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE asset.copy ADD CONSTRAINT asset_copy_editor_fkey FOREIGN KEY (editor)
    REFERENCES actor.usr (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE asset.copy ADD CONSTRAINT asset_copy_floating_fkey FOREIGN KEY (floating)
    REFERENCES config.floating_group (id) DEFERRABLE INITIALLY DEFERRED;
CREATE RULE protect_asset_copy_delete AS ON DELETE TO asset.copy
    DO INSTEAD (UPDATE asset.copy SET deleted = TRUE WHERE OLD.id = asset.copy.id);
CREATE FUNCTION asset.acp_status_changed() RETURNS TRIGGER AS $$
BEGIN
    -- Reshelving (7) becoming Available (0) is the shelving job, not a change of state.
    IF NEW.status <> OLD.status AND NOT (NEW.status = 0 AND OLD.status = 7) THEN
        NEW.status_changed_time := now();
        IF NEW.active_date IS NULL AND NEW.status IN (
                SELECT id FROM config.copy_status WHERE copy_active) THEN
            NEW.active_date := now();
        END IF;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE FUNCTION asset.acp_created() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.active_date IS NULL AND NEW.status IN (
            SELECT id FROM config.copy_status WHERE copy_active) THEN
        NEW.active_date := now();
    END IF;
    IF NEW.status_changed_time IS NULL THEN
        NEW.status_changed_time := now();
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER acp_status_changed_trig BEFORE UPDATE ON asset.copy
    FOR EACH ROW EXECUTE PROCEDURE asset.acp_status_changed();
CREATE TRIGGER acp_created_trig BEFORE INSERT ON asset.copy
    FOR EACH ROW EXECUTE PROCEDURE asset.acp_created();
"""

ACTION_SQL = """
CREATE TABLE money.billable_xact (
    id BIGSERIAL PRIMARY KEY, usr INT NOT NULL,
    xact_start TIMESTAMPTZ NOT NULL DEFAULT now(), xact_finish TIMESTAMPTZ,
    unrecovered BOOL);
CREATE TABLE action.circulation (
    target_copy BIGINT NOT NULL, circ_lib INT NOT NULL, circ_staff INT NOT NULL,
    checkin_staff INT, checkin_lib INT, renewal_remaining INT NOT NULL,
    grace_period INTERVAL NOT NULL, due_date TIMESTAMPTZ, stop_fines_time TIMESTAMPTZ,
    checkin_time TIMESTAMPTZ, create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    duration INTERVAL, fine_interval INTERVAL NOT NULL DEFAULT '1 day'::INTERVAL,
    recurring_fine NUMERIC(6,2), max_fine NUMERIC(6,2),
    phone_renewal BOOL NOT NULL DEFAULT FALSE, desk_renewal BOOL NOT NULL DEFAULT FALSE,
    opac_renewal BOOL NOT NULL DEFAULT FALSE,
    duration_rule TEXT NOT NULL, recurring_fine_rule TEXT NOT NULL, max_fine_rule TEXT NOT NULL,
    stop_fines TEXT CHECK (stop_fines IN ('CHECKIN', 'CLAIMSRETURNED', 'LOST', 'MAXFINES',
                                          'RENEW', 'LONGOVERDUE', 'CLAIMSNEVERCHECKEDOUT')),
    workstation INT REFERENCES actor.workstation (id) ON DELETE SET NULL
        DEFERRABLE INITIALLY DEFERRED,
    checkin_workstation INT REFERENCES actor.workstation (id) ON DELETE SET NULL
        DEFERRABLE INITIALLY DEFERRED,
    copy_location INT NOT NULL DEFAULT 1
        REFERENCES asset.copy_location (id) DEFERRABLE INITIALLY DEFERRED,
    checkin_scan_time TIMESTAMPTZ, auto_renewal BOOL NOT NULL DEFAULT FALSE,
    auto_renewal_remaining INT
) INHERITS (money.billable_xact);
ALTER TABLE action.circulation ADD PRIMARY KEY (id);
ALTER TABLE action.circulation ADD COLUMN parent_circ BIGINT
    REFERENCES action.circulation (id) DEFERRABLE INITIALLY DEFERRED;
CREATE UNIQUE INDEX circ_parent_idx ON action.circulation (parent_circ)
    WHERE parent_circ IS NOT NULL;
CREATE UNIQUE INDEX only_one_concurrent_checkout_per_copy ON action.circulation (target_copy)
    WHERE checkin_time IS NULL;
CREATE INDEX action_circulation_target_copy_idx ON action.circulation (target_copy);
ALTER TABLE action.circulation ADD CONSTRAINT action_circulation_usr_fkey FOREIGN KEY (usr)
    REFERENCES actor.usr (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE action.circulation ADD CONSTRAINT action_circulation_circ_lib_fkey
    FOREIGN KEY (circ_lib) REFERENCES actor.org_unit (id) ON DELETE SET NULL
    DEFERRABLE INITIALLY DEFERRED;
-- Evergreen checks target_copy by trigger (a copy may be a serial unit): no FK.
CREATE FUNCTION evergreen.circ_target_copy_exists() RETURNS TRIGGER AS $$
BEGIN
    PERFORM 1 FROM asset.copy WHERE id = NEW.target_copy;
    IF NOT FOUND THEN
        RAISE foreign_key_violation
            USING MESSAGE = 'Referenced asset.copy id not found, target_copy:' || NEW.target_copy;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER action_circulation_target_copy_trig AFTER INSERT OR UPDATE
    ON action.circulation FOR EACH ROW EXECUTE PROCEDURE evergreen.circ_target_copy_exists();
CREATE TABLE action.transit_copy (
    id SERIAL PRIMARY KEY, source_send_time TIMESTAMPTZ, dest_recv_time TIMESTAMPTZ,
    target_copy BIGINT NOT NULL,
    source INT NOT NULL REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED,
    dest INT NOT NULL REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED,
    prev_hop INT REFERENCES action.transit_copy (id) DEFERRABLE INITIALLY DEFERRED,
    copy_status INT NOT NULL REFERENCES config.copy_status (id) DEFERRABLE INITIALLY DEFERRED,
    persistant_transfer BOOL NOT NULL DEFAULT FALSE,
    prev_dest INT REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED,
    cancel_time TIMESTAMPTZ);
"""

# The simulated clock every now() of the schema above reads (see the module docstring).
SIM_CLOCK_SQL = """
CREATE TABLE circhub_sim.clock (at TIMESTAMPTZ);
INSERT INTO circhub_sim.clock (at) VALUES (NULL);
CREATE FUNCTION circhub_sim.now() RETURNS TIMESTAMPTZ AS $$
    SELECT coalesce((SELECT at FROM circhub_sim.clock), pg_catalog.now())
$$ LANGUAGE sql STABLE;
"""


def on_sim_clock(sql: str) -> str:
    """The statements with every now() reading the simulated clock."""
    return sql.replace("now()", "circhub_sim.now()")


def evergreen_sql() -> str:
    """The whole schema, seed rows included, on the simulated clock."""
    return SIM_CLOCK_SQL + on_sim_clock(CONFIG_SQL + ACTOR_SQL + ASSET_SQL + ACTION_SQL)
