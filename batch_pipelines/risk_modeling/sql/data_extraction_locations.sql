-- Data Extraction: the location file of one import file (Moody's MRI location columns).
--
-- Bound parameters (never formatted into the text): import_file and date_value (YYYYMM).
-- The column aliases become the CSV header. PERIL is not written: it names the peril of
-- the coverage columns, so CV1VAL..CV4VAL, SITEDED and SITELIM are written as
-- EQCV1VAL / WSCV1VAL / ... for the perils present (see sql_jobs.PERIL_COLUMNS).
SELECT
    l.account_number         AS ACCNTNUM,
    l.location_number        AS LOCNUM,
    l.location_name          AS LOCNAME,
    l.street                 AS STREETNAME,
    l.city                   AS CITY,
    l.state_code             AS STATECODE,
    l.postal_code            AS POSTALCODE,
    'ISO2A'                  AS CNTRYSCHEME,
    l.country_code           AS CNTRYCODE,
    l.latitude               AS LATITUDE,
    l.longitude              AS LONGITUDE,
    l.construction_scheme    AS BLDGSCHEME,
    l.construction_class     AS BLDGCLASS,
    l.occupancy_scheme       AS OCCSCHEME,
    l.occupancy_type         AS OCCTYPE,
    l.year_built             AS YEARBUILT,
    l.stories                AS NUMSTORIES,
    l.buildings              AS NUMBLDGS,
    l.peril                  AS PERIL,
    l.building_value         AS CV1VAL,
    l.other_structures_value AS CV2VAL,
    l.contents_value         AS CV3VAL,
    l.time_element_value     AS CV4VAL,
    l.site_deductible        AS SITEDED,
    l.site_limit             AS SITELIM
FROM locations l
WHERE l.import_file = :import_file
  AND l.as_of_month = :date_value
ORDER BY l.account_number, l.location_number
