"""Files uploaded for a patient (S3 references) and their ingestion status."""

from lambda_db_setup.builder import MigrationBuilder, func

SQUAWK_IGNORE = {
    "prefer-bigint-over-int": "a small number, not a key; the deployed schema has integer",
    "prefer-timestamp-tz": "the deployed schema has timestamp; moving to timestamptz is a migration of its own",
    "prefer-text-field": "the deployed schema has varchar(20) for this short status code",
}


def up(pgm: MigrationBuilder) -> None:
    pgm.create_table(
        "patient_data",
        {
            "file_id": {"type": "uuid", "primary_key": True, "default": func("uuid_generate_v4()")},
            "patient_id": {
                "type": "uuid",
                "references": "patients",
                "references_column": "patient_id",
                "on_delete": "CASCADE",
                "on_update": "CASCADE",
            },
            "filetype": "varchar",
            "s3_bucket_reference": "varchar",
            "filepath": "varchar",
            "filename": "varchar",
            "time_uploaded": "timestamp",
            "metadata": "text",
            "file_number": "integer",
            "ingestion_status": {"type": "varchar(20)", "default": "not processing"},
        },
        if_not_exists=True,
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_table("patient_data", if_exists=True, cascade=True)
