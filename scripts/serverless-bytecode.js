'use strict';

// A local serverless plugin: after the deployment zip is built (and after
// serverless-python-requirements, listed before it, has added the dependencies), add bytecode
// compiled by the Lambda runtime's Python (scripts/lambda_bytecode.py says why). It runs on
// `serverless package` and `serverless deploy` alike, so no zip leaves without bytecode.
const { execFileSync } = require('child_process');
const path = require('path');

class LambdaBytecode {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'after:package:createDeploymentArtifacts': () => this.compile(),
    };
  }

  compile() {
    const service = this.serverless.service;
    const dir = this.serverless.serviceDir || this.serverless.config.servicePath;
    const artifact =
      (service.package && service.package.artifact) ||
      path.join(dir, '.serverless', `${service.service}.zip`);
    const python = process.env.SLS_PYTHON_BIN || 'python3';
    execFileSync(python, [path.join(dir, 'scripts', 'lambda_bytecode.py'), artifact], {
      stdio: 'inherit',
    });
  }
}

module.exports = LambdaBytecode;
