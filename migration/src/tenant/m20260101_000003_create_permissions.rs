use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Permissions::Table)
                    .col(pk_auto(Permissions::Id))
                    .col(text_uniq(Permissions::Code))
                    .col(text(Permissions::Description))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RolePermissions::Table)
                    .col(integer(RolePermissions::RoleId))
                    .col(integer(RolePermissions::PermissionId))
                    .primary_key(
                        Index::create()
                            .name("pk_role_permissions")
                            .col(RolePermissions::RoleId)
                            .col(RolePermissions::PermissionId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_role_permissions_role_id")
                            .from(RolePermissions::Table, RolePermissions::RoleId)
                            .to(Roles::Table, Roles::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_role_permissions_permission_id")
                            .from(RolePermissions::Table, RolePermissions::PermissionId)
                            .to(Permissions::Table, Permissions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO permissions (code, description) VALUES
                ('users:read', 'List and view users'),
                ('users:write', 'Create, edit and deactivate users'),
                ('people:read', 'List and view people'),
                ('people:write', 'Create, edit and delete people'),
                ('roles:read', 'List roles and their permissions'),
                ('settings:read', 'View tenant settings'),
                ('settings:write', 'Change tenant settings')
             ON CONFLICT DO NOTHING",
        )
        .await?;
        // Joined on names: identity ids are not guaranteed to be the same in every schema.
        db.execute_unprepared(
            "INSERT INTO role_permissions (role_id, permission_id)
             SELECT r.id, p.id FROM roles r CROSS JOIN permissions p WHERE r.name = 'admin'
             UNION ALL
             SELECT r.id, p.id
             FROM (VALUES
                    ('member', 'users:read'),
                    ('member', 'people:read'),
                    ('member', 'people:write'),
                    ('member', 'roles:read'),
                    ('member', 'settings:read'),
                    ('viewer', 'users:read'),
                    ('viewer', 'people:read'),
                    ('viewer', 'roles:read'),
                    ('viewer', 'settings:read')
                  ) AS g(role_name, permission_code)
             JOIN roles r ON r.name = g.role_name
             JOIN permissions p ON p.code = g.permission_code
             ON CONFLICT DO NOTHING",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(RolePermissions::Table)
                    .table(Permissions::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Permissions {
    Table,
    Id,
    Code,
    Description,
}

#[derive(DeriveIden)]
enum RolePermissions {
    Table,
    RoleId,
    PermissionId,
}

#[derive(DeriveIden)]
enum Roles {
    Table,
    Id,
}
