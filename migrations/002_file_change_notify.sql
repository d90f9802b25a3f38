-- 002: tell every cdsd process when a project's files change, so that in-memory
-- caches of file heads can be dropped. Any writer (another cdsd replica, an admin's
-- SQL) triggers it; NOTIFY is delivered on commit and folds duplicate payloads of
-- one transaction into one.

CREATE FUNCTION notify_project_files_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('cds_project_files', OLD.project_id::text);
    ELSE
        PERFORM pg_notify('cds_project_files', NEW.project_id::text);
        IF TG_OP = 'UPDATE' AND NEW.project_id <> OLD.project_id THEN
            PERFORM pg_notify('cds_project_files', OLD.project_id::text);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER project_files_notify
AFTER INSERT OR UPDATE OR DELETE ON project_files
FOR EACH ROW EXECUTE FUNCTION notify_project_files_change();
