-- depends: audit_0001_audit_logs
-- Seed §7: roles with permission lists, and which role each user has.
CREATE TABLE roles (
    role_id     uuid        PRIMARY KEY,
    merchant_id text        NOT NULL,
    -- Insertion order: ListRoles pages on it.
    seq         bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    -- Sorted array of "<domain>:<action>" strings, e.g. ["admin:analytics", "points:read"].
    permissions jsonb       NOT NULL CHECK (jsonb_typeof(permissions) = 'array'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- The target of role_assignments' foreign key: an assignment can only name a role of
    -- its own merchant, whatever the code above it does.
    UNIQUE (merchant_id, role_id)
);
-- "Analyst" and "analyst" are one role to the people picking from a list.
CREATE UNIQUE INDEX roles_name ON roles (merchant_id, lower(name));
CREATE INDEX roles_merchant_seq ON roles (merchant_id, seq);

-- One role per user (seed §6: users.role_id). user_id is a Users-Service id.
CREATE TABLE role_assignments (
    merchant_id text        NOT NULL,
    user_id     uuid        NOT NULL,
    role_id     uuid        NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, user_id),
    FOREIGN KEY (merchant_id, role_id) REFERENCES roles (merchant_id, role_id)
);
CREATE INDEX role_assignments_role ON role_assignments (merchant_id, role_id);

CREATE TRIGGER roles_audit AFTER INSERT OR UPDATE OR DELETE ON roles
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('role_id', '');
CREATE TRIGGER role_assignments_audit AFTER INSERT OR UPDATE OR DELETE ON role_assignments
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('user_id', 'user_id');
