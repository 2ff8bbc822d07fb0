# kafka-backup as a container image (deploy/README.md). Two stages: the first compiles the
# TypeScript sources to dist/ with the dev dependencies; the second holds only dist/ and the
# production dependencies, and runs as the unprivileged `node` user of the base image.

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` builds, and the sources are not copied yet.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/bundle-cli.ts ./scripts/
# Compiles to dist/ and bundles the command into dist/kafka-backup.js.
RUN npm run build

FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# No build here (the compiler is a dev dependency): dist/ comes from the build stage.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
# The metrics endpoint (/metrics, /health) when metrics.enabled is true.
EXPOSE 9090
ENTRYPOINT ["node", "/app/dist/kafka-backup.js"]
CMD ["--help"]
