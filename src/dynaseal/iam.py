"""The least-privilege IAM policy a configured app needs: ``dynaseal iam-policy``.

Built from the config alone, so it names exactly the configured resources: the tables, their
blind-index GSIs and claims tables, the KMS keys (conditioned on the encryption context
dynaseal sends) and the keyset secrets. Only the calls the library makes at run time are
granted; creating tables, rotating keys and the operations jobs are for an operator's role.
"""

from __future__ import annotations

import os
from typing import Any

from .config import Config
from .errors import ConfigError
from .keyrings.kms import parse_key_arn
from .tables import claims_table_name

__all__ = ["CLAIMS_ACTIONS", "INDEX_ACTIONS", "TABLE_ACTIONS", "iam_policy"]

TABLE_ACTIONS = (
    "dynamodb:BatchGetItem",    # SealedTable.batch_get
    "dynamodb:BatchWriteItem",  # SealedTable.batch_writer
    "dynamodb:DeleteItem",      # delete_item
    "dynamodb:GetItem",         # get_item, update_item's read
    "dynamodb:PutItem",         # put_item, update_item's conditional write
    "dynamodb:Query",           # query
    "dynamodb:Scan",            # scan
)
INDEX_ACTIONS = ("dynamodb:Query",)  # SealedTable.find on a blind-index GSI
CLAIMS_ACTIONS = (  # unique blind indexes: claim, promote, release
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)
CONTEXT_KEY = "dynaseal:table"


def iam_policy(config: Config, *, account: str | None = None, region: str | None = None
               ) -> dict[str, Any]:
    """The policy document (a dict ready for ``json.dumps``)."""
    kms_generators: list[str] = []
    kms_others: list[str] = []
    secrets: list[tuple[str, str | None]] = []
    for role, kr in config.keyring_settings.walk():
        if kr.type == "kms" and kr.key_id:
            (kms_generators if role == "generator" else kms_others).append(kr.key_id)
        elif kr.type == "secretsmanager" and kr.secret_id:
            secrets.append((kr.secret_id, kr.region))
    partition = "aws"
    for arn in kms_generators + kms_others:
        parts = parse_key_arn(arn)
        partition = parts["partition"]
        account = account or parts["account"]
    for secret_id, _ in secrets:
        if secret_id.startswith("arn:"):
            bits = secret_id.split(":")
            if len(bits) >= 7:
                partition, account = bits[1], account or bits[4]
    region = (region or config.dynamodb.region or os.environ.get("AWS_REGION")
              or os.environ.get("AWS_DEFAULT_REGION"))
    if not region:
        raise ConfigError(f"{config.path}: no region for the DynamoDB ARNs: set [dynamodb] "
                          "region, AWS_REGION or --region")
    if not account or not account.isdigit() or len(account) != 12:
        raise ConfigError(f"{config.path}: the policy needs the 12-digit AWS account id of the "
                          "tables: give --account (it is read from a KMS key ARN when there "
                          "is one)")

    def table_arn(name: str) -> str:
        return f"arn:{partition}:dynamodb:{region}:{account}:table/{name}"

    tables = sorted(config.tables.values(), key=lambda t: t.table_name)
    names = [t.table_name for t in tables]
    statements: list[dict[str, Any]] = [{
        "Sid": "SealedTableItems",
        "Effect": "Allow",
        "Action": list(TABLE_ACTIONS),
        "Resource": [table_arn(n) for n in names],
    }]
    indexes = [f"{table_arn(t.table_name)}/index/{ix.attribute}"
               for t in tables for ix in t.schema.blind_indexes.values()]
    if indexes:
        statements.append({"Sid": "BlindIndexLookups", "Effect": "Allow",
                           "Action": list(INDEX_ACTIONS), "Resource": indexes})
    claims = [table_arn(claims_table_name(t.table_name)) for t in tables
              if any(ix.unique for ix in t.schema.blind_indexes.values())]
    if claims:
        statements.append({"Sid": "UniqueIndexClaims", "Effect": "Allow",
                           "Action": list(CLAIMS_ACTIONS), "Resource": claims})
    condition = {
        "StringEquals": {f"kms:EncryptionContext:{CONTEXT_KEY}": names},
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": [CONTEXT_KEY]},
    }
    if kms_generators:
        statements.append({"Sid": "KmsSealAndOpen", "Effect": "Allow",
                           "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                           "Resource": sorted(set(kms_generators)), "Condition": condition})
    if kms_others:
        statements.append({"Sid": "KmsMultiKeyringChildren", "Effect": "Allow",
                           "Action": ["kms:Decrypt", "kms:Encrypt"],
                           "Resource": sorted(set(kms_others)), "Condition": condition})
    if secrets:
        arns = []
        for secret_id, secret_region in secrets:
            if secret_id.startswith("arn:"):
                arns.append(secret_id)
            else:  # a name: Secrets Manager appends a hyphen and six random characters
                arns.append(f"arn:{partition}:secretsmanager:{secret_region or region}:"
                            f"{account}:secret:{secret_id}-??????")
        statements.append({"Sid": "KeysetSecrets", "Effect": "Allow",
                           "Action": ["secretsmanager:GetSecretValue"],
                           "Resource": sorted(set(arns))})
    return {"Version": "2012-10-17", "Statement": statements}
