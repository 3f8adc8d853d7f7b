-- Data Extraction: the account file of one import file (Moody's MRI account columns).
--
-- Bound parameters (never formatted into the text): import_file and date_value (YYYYMM).
-- The column aliases become the CSV header, so a production warehouse only needs a view
-- with these source columns, or a cycle override at {cycle_dir}/sql/<this file name>.
-- ANSI SQL: runs unchanged on SQLite (the demo's sample) and SQL Server.
SELECT
    a.account_number    AS ACCNTNUM,
    a.account_name      AS ACCNTNAME,
    a.policy_number     AS POLICYNUM,
    a.policy_type       AS POLICYTYPE,
    a.line_of_business  AS LOBNAME,
    a.inception_date    AS INCEPTDATE,
    a.expiration_date   AS EXPIREDATE,
    a.policy_limit      AS BLANLIMAMT,
    a.currency          AS BLANLIMCUR,
    a.policy_deductible AS BLANDEDAMT,
    a.participation     AS PARTOF,
    a.premium           AS BLANPREAMT,
    a.program           AS USERDEF1,
    a.import_file       AS USERDEF2
FROM accounts a
WHERE a.import_file = :import_file
  AND a.as_of_month = :date_value
ORDER BY a.account_number
